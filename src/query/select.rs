//! Item selection over records, whatever asked for it: `datetime` and a CQL2
//! filter, `sortby`, keyset cursors and a page size, with a count that stops
//! at a cap.

use super::QueryError;
use super::cql::{self, Expr, Interval, Lang, Record, Scalar};
use super::properties::{CollectionId, Kind, Property};
use serde_json::Value;
use std::cmp::Ordering;

/// Counting more matches than this costs more than a page is worth; past it,
/// `numberMatched` is left out, as OGC API - Features allows.
pub const COUNT_CAP: usize = 10_000;

/// Reads a filter in `lang` and checks it against the collection's queryables.
pub fn filter(collection: CollectionId, raw: &str, lang: Lang) -> Result<Expr, QueryError> {
    Ok(cql::parse(raw, lang, collection.properties())?)
}

/// One `sortby` term: a sortable property, ascending or descending.
#[derive(Debug, Clone, Copy)]
pub struct SortKey {
    pub property: &'static Property,
    pub descending: bool,
}

impl SortKey {
    /// Reads `sortby` terms (`name`, `+name` or `-name`), each naming a
    /// sortable of the collection at most once.
    pub fn parse_all(collection: CollectionId, terms: &[String]) -> Result<Vec<Self>, QueryError> {
        let mut keys: Vec<SortKey> = Vec::new();
        for raw in terms {
            // A `+` in a query string arrives as a space.
            let (name, descending) = match raw.trim() {
                r if r.starts_with('-') => (&r[1..], true),
                r => (r.trim_start_matches('+'), false),
            };
            let property = collection
                .sortables()
                .find(|q| q.name == name)
                .ok_or_else(|| QueryError::UnknownSortable {
                    name: name.to_owned(),
                    known: collection
                        .sortables()
                        .map(|q| q.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if keys.iter().any(|k| k.property.name == property.name) {
                return Err(QueryError::SortedTwice {
                    name: name.to_owned(),
                });
            }
            keys.push(SortKey {
                property,
                descending,
            });
        }
        Ok(keys)
    }
}

/// The order of a collection's items when `sortby` does not name one: sites
/// and candidates by id; observations newest observed first, ties by id
/// descending, which is the order the time and area indexes read them in, so
/// that a page costs what it holds rather than the observations in its window.
fn default_order(collection: CollectionId) -> (Vec<SortKey>, bool) {
    match collection {
        CollectionId::Observations => (
            collection
                .property("observed_at")
                .map(|property| SortKey {
                    property,
                    descending: true,
                })
                .into_iter()
                .collect(),
            true,
        ),
        CollectionId::Sites | CollectionId::Candidates => (Vec::new(), false),
    }
}

/// The cursors a page may start after or end before, as a client sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursors<'a> {
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
}

/// What to select from a collection, checked.
pub struct Selector {
    pub collection: CollectionId,
    pub limit: usize,
    pub datetime: Option<Interval>,
    pub filter: Option<Expr>,
    pub sortby: Vec<SortKey>,
    /// Whether ties of the sort keys go by id descending rather than
    /// ascending: so in a collection's own order when `sortby` is not given.
    pub ids_descending: bool,
    pub after: Option<Vec<Scalar>>,
    pub before: Option<Vec<Scalar>>,
}

/// One page of a query, and where the pages beside it start.
pub struct Selection<T> {
    pub page: Vec<T>,
    /// How many items match in all; `None` where counting them would cost
    /// more than a page is worth.
    pub matched: Option<usize>,
    pub next: Option<String>,
    pub prev: Option<String>,
}

impl<T> Selection<T> {
    /// The page, and the rest of the selection without it: what its links
    /// and count are written from.
    pub fn take_page(self) -> (Vec<T>, Selection<T>) {
        let rest = Selection {
            page: Vec::new(),
            matched: self.matched,
            next: self.next,
            prev: self.prev,
        };
        (self.page, rest)
    }
}

impl Selector {
    /// A selector; the cursors are read against the sort order, `after` first.
    pub fn new(
        collection: CollectionId,
        limit: usize,
        datetime: Option<Interval>,
        filter: Option<Expr>,
        sortby: Vec<SortKey>,
        cursors: Cursors<'_>,
    ) -> Result<Self, QueryError> {
        let (sortby, ids_descending) = if sortby.is_empty() {
            default_order(collection)
        } else {
            (sortby, false)
        };
        let mut s = Self {
            collection,
            limit,
            datetime,
            filter,
            sortby,
            ids_descending,
            after: None,
            before: None,
        };
        s.after = cursors
            .after
            .map(|c| s.decode_cursor("after", c))
            .transpose()?;
        s.before = cursors
            .before
            .map(|c| s.decode_cursor("before", c))
            .transpose()?;
        if s.after.is_some() && s.before.is_some() {
            return Err(QueryError::BothCursors);
        }
        Ok(s)
    }

    /// The sort key of a record: the `sortby` properties, then the id.
    fn key(&self, r: &dyn Record) -> Vec<Scalar> {
        self.sortby
            .iter()
            .map(|k| r.property(k.property.name))
            .chain([r.property("id")])
            .collect()
    }

    fn compare(&self, a: &[Scalar], b: &[Scalar]) -> Ordering {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let desc = self
                .sortby
                .get(i)
                .map_or(self.ids_descending, |k| k.descending);
            let o = x.sort_cmp(y);
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// A cursor is the sort key of the item it follows or precedes: the bare id
    /// when items are in id order (as `after=<id>` always was), otherwise a JSON
    /// array of the key's values.
    fn encode_cursor(&self, key: &[Scalar]) -> String {
        if self.sortby.is_empty() {
            match &key[0] {
                Scalar::Str(id) => id.clone(),
                other => other.to_json().to_string(),
            }
        } else {
            Value::Array(key.iter().map(Scalar::to_json).collect()).to_string()
        }
    }

    fn decode_cursor(&self, param: &'static str, raw: &str) -> Result<Vec<Scalar>, QueryError> {
        let bad = || QueryError::BadCursor { param };
        if self.sortby.is_empty() {
            return Ok(vec![Scalar::Str(raw.to_owned())]);
        }
        let v: Vec<Value> = serde_json::from_str(raw).map_err(|_| bad())?;
        if v.len() != self.sortby.len() + 1 {
            return Err(bad());
        }
        self.sortby
            .iter()
            .map(|k| k.property.kind)
            .chain([Kind::String])
            .zip(&v)
            .map(|(k, v)| Scalar::from_json(k, v).ok_or_else(bad))
            .collect()
    }

    /// Whether a record passes `datetime` and the filter.
    fn wanted(&self, r: &dyn Record) -> bool {
        let time = self.collection.time_property();
        self.datetime.is_none_or(|i| match r.property(time) {
            Scalar::Time(t) => i.contains(t),
            _ => false,
        }) && self.filter.as_ref().is_none_or(|f| f.matches(r))
    }

    /// Applies `datetime` and `filter`, sorts, and cuts out the page the
    /// cursor asks for. Keyset paging: a page starts strictly after (or ends
    /// strictly before) a key, so items that land meanwhile never shift it.
    pub fn select<T: Record>(&self, items: Vec<T>) -> Selection<T> {
        let mut keyed: Vec<(Vec<Scalar>, T)> = items
            .into_iter()
            .filter(|r| self.wanted(r))
            .map(|r| (self.key(&r), r))
            .collect();
        keyed.sort_by(|a, b| self.compare(&a.0, &b.0));
        let matched = keyed.len();
        let (start, end) = match (&self.after, &self.before) {
            (Some(after), _) => {
                let s = keyed.partition_point(|(k, _)| self.compare(k, after) != Ordering::Greater);
                (s, (s + self.limit).min(matched))
            }
            (None, Some(before)) => {
                let e = keyed.partition_point(|(k, _)| self.compare(k, before) == Ordering::Less);
                (e.saturating_sub(self.limit), e)
            }
            (None, None) => (0, self.limit.min(matched)),
        };
        let next = (end < matched && end > start).then(|| self.encode_cursor(&keyed[end - 1].0));
        let prev = (start > 0 && end > start).then(|| self.encode_cursor(&keyed[start].0));
        let page = keyed
            .into_iter()
            .skip(start)
            .take(end - start)
            .map(|(_, r)| r)
            .collect();
        Selection {
            page,
            matched: Some(matched),
            next,
            prev,
        }
    }

    /// Whether the items are in the observations' own order: newest observed
    /// first, ties by id descending.
    pub fn newest_observed_first(&self) -> bool {
        self.ids_descending
            && matches!(self.sortby.as_slice(), [k] if k.property.name == "observed_at" && k.descending)
    }

    /// The cursor of a page that ends with `r`.
    pub fn cursor_of(&self, r: &dyn Record) -> String {
        self.encode_cursor(&self.key(r))
    }

    /// Whether [`Selector::select_in_id_order`] can answer this query: items
    /// in id order, read forward from a cursor.
    pub fn reads_forward_by_id(&self) -> bool {
        self.sortby.is_empty() && self.before.is_none()
    }

    /// The id the page starts after, for a query that reads forward by id.
    pub fn after_id(&self) -> Option<&str> {
        match self.after.as_deref() {
            Some([Scalar::Str(id)]) => Some(id),
            _ => None,
        }
    }

    /// [`Selector::select`] for items that come in id order
    /// ([`Selector::reads_forward_by_id`]): `before` up to the cursor, `items`
    /// after it. Applies `datetime` and `filter` one item at a time and
    /// collects only the page; counts matches, before the cursor as well, up
    /// to `cap` beyond the page, and looks at no more than [`COUNT_VISITS`]
    /// items for the count: a rare match would otherwise cost the whole
    /// catalogue. `numberMatched` is `total` when the caller knows it, else
    /// the count, left out when it passed `cap` or the items to look at ran
    /// out; the links then assume there may be more.
    pub fn select_in_id_order<T: Record>(
        &self,
        before: impl Iterator<Item = T>,
        items: impl Iterator<Item = T>,
        cap: usize,
        total: Option<usize>,
    ) -> Selection<T> {
        let limit = self.limit + cap;
        let (earlier, earlier_known) = if total.is_some() {
            (0, true)
        } else {
            let mut n = 0;
            let mut known = true;
            for (seen, r) in before.enumerate() {
                if seen == COUNT_VISITS {
                    known = false;
                    break;
                }
                if self.wanted(&r) {
                    n += 1;
                    if n > limit {
                        break;
                    }
                }
            }
            (n, known)
        };
        let mut page = Vec::new();
        let mut matched = earlier;
        let mut counted_all = earlier_known;
        let mut seen_after_page = 0;
        for r in items {
            if page.len() >= self.limit {
                // With the count known, one match past the page says there
                // are more.
                if total.is_some() && matched > earlier + page.len() {
                    break;
                }
                seen_after_page += 1;
                if seen_after_page > COUNT_VISITS {
                    counted_all = false;
                    break;
                }
            }
            if !self.wanted(&r) {
                continue;
            }
            matched += 1;
            if page.len() < self.limit {
                page.push(r);
            } else if matched > limit {
                break;
            }
        }
        let more = !counted_all || matched > earlier + page.len();
        let key_of = |r: Option<&T>| r.map(|r| self.encode_cursor(&self.key(r)));
        Selection {
            next: key_of(page.last()).filter(|_| more && page.len() == self.limit),
            // Unfiltered, the items before a cursor were not counted: any
            // cursor has some before it.
            prev: key_of(page.first()).filter(|_| {
                earlier > 0 || !earlier_known || (total.is_some() && self.after.is_some())
            }),
            matched: total.or((counted_all && matched <= limit).then_some(matched)),
            page,
        }
    }
}

/// How many items past a full page, or before the cursor, an id-order
/// selection looks at to count its matches.
pub const COUNT_VISITS: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::cql::Geom;

    #[derive(Clone, Copy)]
    struct Row(&'static str, f64);

    impl Record for Row {
        fn property(&self, name: &str) -> Scalar {
            match name {
                "id" => Scalar::Str(self.0.into()),
                "observation_count" => Scalar::Num(self.1),
                _ => Scalar::Null,
            }
        }
        fn geometry(&self) -> Option<Geom<'_>> {
            None
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            Row("a", 3.0),
            Row("b", 1.0),
            Row("c", 3.0),
            Row("d", 2.0),
            Row("e", 1.0),
        ]
    }

    /// A selector over sites from a query string, as the HTTP layer would
    /// read one.
    fn query(q: &str) -> Selector {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let c = CollectionId::Sites;
        let sortby: Vec<String> = get("sortby")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        Selector::new(
            c,
            get("limit").map_or(100, |l| l.parse().unwrap()),
            None,
            get("filter").map(|f| filter(c, f, Lang::Text).unwrap()),
            SortKey::parse_all(c, &sortby).unwrap(),
            Cursors {
                after: get("after"),
                before: get("before"),
            },
        )
        .unwrap()
    }

    fn ids(sel: &Selection<Row>) -> Vec<&'static str> {
        sel.page.iter().map(|r| r.0).collect()
    }

    #[test]
    fn a_rare_match_is_not_counted_past_the_items_it_may_look_at() {
        // One match in the first three, then none for longer than the count looks.
        let q = query("limit=1&filter=observation_count%20%3E%201");
        let many = || {
            (0..COUNT_VISITS * 2).map(|i| {
                Row(
                    if i == 0 { "a" } else { "b" },
                    if i == 0 { 2.0 } else { 0.0 },
                )
            })
        };
        let sel = q.select_in_id_order(std::iter::empty(), many(), 10_000, None);
        assert_eq!(sel.page.len(), 1);
        assert_eq!(sel.matched, None, "the count stopped before the end");
        assert!(sel.next.is_some(), "there may be more");
        // Within what it may look at, the count is exact and there is no next page.
        let few = (0..100).map(|i| {
            Row(
                if i == 0 { "a" } else { "b" },
                if i == 0 { 2.0 } else { 0.0 },
            )
        });
        let sel = q.select_in_id_order(std::iter::empty(), few, 10_000, None);
        assert_eq!((sel.matched, sel.next.is_none()), (Some(1), true));
    }

    #[test]
    fn a_page_read_forward_in_id_order_is_the_page_a_full_selection_gives() {
        let all = rows();
        for q in [
            "limit=2",
            "limit=2&after=b",
            "limit=2&after=c",
            "limit=10&after=a",
            "limit=1&filter=observation_count%20%3E%201",
            "limit=1&filter=observation_count%20%3E%201&after=a",
            "limit=3&filter=observation_count%20%3D%201",
            "limit=2&after=e",
        ] {
            let q = query(q);
            assert!(q.reads_forward_by_id());
            let full = q.select(rows());
            let after = q.after_id().unwrap_or("");
            let before = all
                .iter()
                .filter(|r| q.after_id().is_some() && r.0 <= after)
                .copied();
            let items = all.iter().filter(|r| r.0 > after).copied();
            let streamed = q.select_in_id_order(before, items, 100, None);
            assert_eq!(ids(&streamed), ids(&full));
            assert_eq!(streamed.matched, full.matched);
            assert_eq!(streamed.next, full.next);
            assert_eq!(streamed.prev, full.prev);
            // Counting stops past the cap, and the count is then left out.
            let capped = q.select_in_id_order(
                all.iter()
                    .filter(|r| q.after_id().is_some() && r.0 <= after)
                    .copied(),
                all.iter().filter(|r| r.0 > after).copied(),
                0,
                None,
            );
            assert_eq!(ids(&capped), ids(&full));
            if full.matched.unwrap() > q.limit {
                assert_eq!(capped.matched, None);
            }
        }
    }

    #[test]
    fn sorted_pages_follow_next_and_prev_cursors_without_gaps_or_repeats() {
        let q = query("limit=2&sortby=-observation_count");
        let first = q.select(rows());
        assert_eq!(ids(&first), ["a", "c"]);
        assert_eq!(first.matched, Some(5));
        assert!(first.prev.is_none());
        let next = first.next.clone().unwrap();
        let second = query(&format!(
            "limit=2&sortby=-observation_count&after={}",
            urlencode(&next)
        ))
        .select(rows());
        assert_eq!(ids(&second), ["d", "b"]);
        let third = query(&format!(
            "limit=2&sortby=-observation_count&after={}",
            urlencode(second.next.as_ref().unwrap())
        ))
        .select(rows());
        assert_eq!(ids(&third), ["e"]);
        assert!(third.next.is_none());
        let back = query(&format!(
            "limit=2&sortby=-observation_count&before={}",
            urlencode(third.prev.as_ref().unwrap())
        ))
        .select(rows());
        assert_eq!(ids(&back), ["d", "b"]);
    }

    #[test]
    fn a_new_item_before_the_cursor_does_not_shift_the_next_page() {
        let q = query("limit=2");
        let first = q.select(rows());
        let after = first.next.unwrap();
        let mut more = rows();
        more.push(Row("aa", 9.0));
        let second = query(&format!("limit=2&after={after}")).select(more);
        assert_eq!(ids(&second), ["c", "d"]);
    }

    fn urlencode(s: &str) -> String {
        serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
    }

    #[test]
    fn sortby_and_cursors_that_make_no_sense_say_which_parameter_is_wrong() {
        let c = CollectionId::Sites;
        let sort = |t: &str| SortKey::parse_all(c, &[t.to_owned()]).unwrap_err();
        assert_eq!(sort("colour").parameter(), "sortby");
        assert_eq!(sort("geometry").parameter(), "sortby");
        let twice = SortKey::parse_all(c, &["name".into(), "-name".into()]).unwrap_err();
        assert_eq!(twice.to_string(), "name is named twice");
        let cursors = |after, before| {
            let sortby = SortKey::parse_all(c, &["name".into()]).unwrap();
            Selector::new(c, 10, None, None, sortby, Cursors { after, before })
        };
        assert_eq!(
            cursors(Some("nonsense"), None).err().unwrap().parameter(),
            "after"
        );
        assert_eq!(
            cursors(Some(r#"["a","b"]"#), Some(r#"["a","b"]"#))
                .err()
                .unwrap(),
            QueryError::BothCursors
        );
    }
}
