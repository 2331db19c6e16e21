//! History as a query: a site's timeline, and every change in an area over a
//! time window. Events are GeoJSON Features so a map can draw them directly.

use super::Catalogue;
use crate::index::parts_meet_bbox;
use crate::model::StoredObservation;
use crate::model::{BBox, Declaration, Finding, SiteId, Timestamp, geojson_parts};
use crate::render::candidate_feature;
use crate::store::{Before, RevisionRow, SitePage, StoreError};
use serde_json::{Value, json};

/// The kinds of event, in the order they sort among events of the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Observation = 0,
    Revision = 1,
    Candidate = 2,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Observation => "observation",
            EventKind::Revision => "revision",
            EventKind::Candidate => "candidate",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "observation" => EventKind::Observation,
            "revision" => EventKind::Revision,
            "candidate" => EventKind::Candidate,
            _ => return None,
        })
    }
}

/// Where a page of changes ends: the next page starts strictly after it in the
/// newest-first order of `(time, kind, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: String,
    pub kind: EventKind,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}~{}~{}", self.time, self.kind.as_str(), self.id)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, '~');
        let time = parts.next()?;
        Timestamp::parse("cursor", time).ok()?;
        let kind = EventKind::parse(parts.next()?)?;
        Some(Self {
            time: time.to_owned(),
            kind,
            id: parts.next()?.to_owned(),
        })
    }

    /// The keyset bound for one kind of event: of the events at the cursor's own
    /// instant, kinds sorting before the cursor's come next in full, kinds after
    /// it are already listed.
    fn bound_for(&self, kind: EventKind) -> Before {
        let id = match kind.cmp(&self.kind) {
            std::cmp::Ordering::Less => "~".to_owned(),
            std::cmp::Ordering::Greater => String::new(),
            std::cmp::Ordering::Equal => self.id.clone(),
        };
        Before {
            time: self.time.clone(),
            id,
        }
    }
}

/// What `changes` asks for.
#[derive(Debug, Clone, Default)]
pub struct ChangesQuery {
    pub bbox: Option<BBox>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only observations with one of these findings (and so no other kinds).
    pub finding: Vec<Finding>,
    /// Only events about sites with one of these declarations.
    pub declaration: Vec<Declaration>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<EventKind>,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// The order of a site's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// What `site_history` asks for.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub order: Order,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// One page of events, and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Value>,
    pub next: Option<Cursor>,
}

/// An event on its way to a page: what orders it, and the row it came
/// from. Its Feature is made only once it is known to be on the page, since
/// each kind reads one event more than the page holds and most are cut.
struct Event {
    time: String,
    kind: EventKind,
    id: String,
    row: Row,
}

enum Row {
    Observation(Box<StoredObservation>),
    Revision(Box<RevisionRow>),
    Candidate(Box<crate::model::Candidate>),
}

impl Event {
    fn feature(self) -> Value {
        match self.row {
            Row::Observation(o) => json!({
                "type": "Feature",
                "id": o.id,
                "geometry": o.place.to_geojson(),
                "properties": {
                    "event": "observation", "time": o.observed_at, "id": o.id,
                    "observed_at": o.observed_at, "recorded_at": o.recorded_at, "batch_id": o.batch_id,
                    "sensor": o.sensor, "finding": o.finding, "confidence": o.confidence,
                    "site_id": o.site_id, "description": o.description, "image_ref": o.image_ref,
                    "source": o.source, "external_id": o.external_id, "candidate_id": o.candidate_id,
                    "sites": o.sites,
                }
            }),
            Row::Revision(r) => {
                let props = &r.feature["properties"];
                json!({
                    "type": "Feature",
                    "id": format!("{}@{}", r.site_id, r.revision),
                    "geometry": r.feature["geometry"],
                    "properties": {
                        "event": "revision", "time": r.recorded_at, "site_id": r.site_id, "revision": r.revision,
                        "change": r.change, "actor": r.actor, "reason": r.reason, "diff": r.diff,
                        "name": props["name"], "kind": props["kind"], "declaration": props["declaration"], "status": props["status"],
                        "batch_id": Value::Null,
                    }
                })
            }
            Row::Candidate(c) => {
                let mut feature = candidate_feature(&c);
                feature["properties"]["event"] = json!("candidate");
                feature["properties"]["time"] = json!(c.created_at);
                feature
            }
        }
    }
}

fn observation_event(o: StoredObservation) -> Event {
    Event {
        time: o.observed_at.to_rfc3339(),
        kind: EventKind::Observation,
        id: o.id.clone(),
        row: Row::Observation(Box::new(o)),
    }
}

fn revision_event(r: RevisionRow) -> Event {
    Event {
        time: r.recorded_at.to_rfc3339(),
        kind: EventKind::Revision,
        id: r.key(),
        row: Row::Revision(Box::new(r)),
    }
}

fn newest_first_order(a: &Event, b: &Event) -> std::cmp::Ordering {
    (&b.time, b.kind, &b.id).cmp(&(&a.time, a.kind, &a.id))
}

impl Catalogue {
    /// One page of a site's timeline: every revision with its field-level diff
    /// and every observation linked to it, within `[from, to]`, in the order
    /// asked for. `None` if the site was never recorded.
    pub fn site_history(&self, id: &SiteId, q: &HistoryQuery) -> Result<Option<Page>, StoreError> {
        let store = self.reader()?;
        if !store.site_known(id.as_str())? {
            return Ok(None);
        }
        let newest_first = q.order == Order::NewestFirst;
        // Observations at the cursor's own instant sort before revisions oldest
        // first (all already listed) and after them newest first (none listed
        // yet); "~" sorts after every id, so it bounds both cases.
        let bound = q.after.as_ref().map(|c| Before {
            time: c.time.clone(),
            id: if c.kind == EventKind::Observation {
                c.id.clone()
            } else {
                "~".to_owned()
            },
        });
        let page = SitePage {
            newest_first,
            after: bound.as_ref(),
            limit: q.limit + 1,
        };
        // A site has few revisions; they are read whole and cut to the page here.
        let mut events: Vec<Event> = store
            .site_revisions_between(id.as_str(), q.from, q.to)?
            .into_iter()
            .map(revision_event)
            .chain(
                store
                    .site_observations(id, q.from, q.to, page)?
                    .into_iter()
                    .map(observation_event),
            )
            .collect();
        if let Some(c) = &q.after {
            let key = (c.time.as_str(), c.kind, c.id.as_str());
            events.retain(|e| {
                let k = (e.time.as_str(), e.kind, e.id.as_str());
                if newest_first { k < key } else { k > key }
            });
        }
        if newest_first {
            events.sort_by(newest_first_order);
        } else {
            events.sort_by(|a, b| newest_first_order(b, a));
        }
        let more = events.len() > q.limit;
        events.truncate(q.limit);
        let next = more.then(|| events.last()).flatten().map(|e| Cursor {
            time: e.time.clone(),
            kind: e.kind,
            id: e.id.clone(),
        });
        Ok(Some(Page {
            events: events.into_iter().map(Event::feature).collect(),
            next,
        }))
    }

    /// Change log entries after sequence number `after`, oldest first, at most
    /// `limit`, and the newest sequence number.
    pub fn change_log(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<crate::store::LogEntry>, i64), StoreError> {
        let store = self.reader()?;
        // The head first: entries committed in between are on the page, not lost.
        let head = store.log_head()?;
        Ok((store.log_after(after, limit)?, head))
    }

    /// Every observation, revision and candidate in the area and time window,
    /// newest first, one page at a time.
    ///
    /// Each kind in each rectangle of the box is read newest first, a chunk at
    /// a time, and only as far as the page needs: an event is on the page for
    /// sure once it is newer than the last row read of every stream not yet
    /// at its end, so the stream read next is the one whose last row is
    /// newest. A page of 100 events reads little more than 100 rows, where
    /// reading 101 of every kind read three times that.
    pub fn changes(&self, q: &ChangesQuery) -> Result<Page, StoreError> {
        let wanted = |k: EventKind| {
            (q.kinds.is_empty() || q.kinds.contains(&k))
                && (q.finding.is_empty() || k == EventKind::Observation)
                && (k != EventKind::Candidate
                    || q.declaration.is_empty()
                    || q.declaration.contains(&Declaration::Undeclared))
        };
        let rects: Vec<Option<[f64; 4]>> = match &q.bbox {
            Some(b) => b.pieces().into_iter().map(Some).collect(),
            None => vec![None],
        };
        let fetch = q.limit + 1;
        let mut streams: Vec<Stream> = [
            EventKind::Observation,
            EventKind::Revision,
            EventKind::Candidate,
        ]
        .into_iter()
        .filter(|k| wanted(*k))
        .flat_map(|kind| {
            rects.iter().map(move |rect| Stream {
                kind,
                rect: *rect,
                after: q.after.as_ref().map(|c| c.bound_for(kind)),
                read: false,
                ended: false,
            })
        })
        .collect();
        // A first chunk that shares the page among the streams; a stream read
        // again gets twice its last chunk, so that few statements are run.
        let mut chunk = vec![(fetch / streams.len().max(1) + 1).min(fetch); streams.len()];
        let reading = Reading {
            q,
            store: self.reader()?,
            index: self.index(),
            findings: q.finding.iter().map(|f| f.as_str().to_owned()).collect(),
        };
        let mut events: Vec<Event> = Vec::new();
        let mut seen: std::collections::HashSet<(EventKind, String)> = Default::default();
        loop {
            let next = streams
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.ended)
                .max_by(|(_, a), (_, b)| a.frontier().cmp(&b.frontier()))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            if let Frontier::At(time, kind, id) = streams[i].frontier() {
                let sure = events
                    .iter()
                    .filter(|e| (e.time.as_str(), e.kind, e.id.as_str()) > (time, kind, id))
                    .count();
                if sure >= fetch {
                    break;
                }
            }
            let n = chunk[i];
            chunk[i] = (n * 2).min(fetch);
            for e in reading.next_chunk(&mut streams[i], n)? {
                if seen.insert((e.kind, e.id.clone())) {
                    events.push(e);
                }
            }
        }
        events.sort_by(newest_first_order);
        let more = events.len() > q.limit;
        events.truncate(q.limit);
        let next = if more {
            events.last().map(|e| Cursor {
                time: e.time.clone(),
                kind: e.kind,
                id: e.id.clone(),
            })
        } else {
            None
        };
        Ok(Page {
            events: events.into_iter().map(Event::feature).collect(),
            next,
        })
    }
}

/// One kind of event in one rectangle, read newest first.
struct Stream {
    kind: EventKind,
    rect: Option<[f64; 4]>,
    /// The last row read, or the page's cursor before the first read.
    after: Option<Before>,
    read: bool,
    ended: bool,
}

/// Where a stream stands: nothing known yet sorts above every event, since
/// its first row may be the newest of all.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Frontier<'a> {
    At(&'a str, EventKind, &'a str),
    Unread,
}

impl Stream {
    fn frontier(&self) -> Frontier<'_> {
        match (&self.after, self.read) {
            (Some(b), true) => Frontier::At(&b.time, self.kind, &b.id),
            _ => Frontier::Unread,
        }
    }
}

/// What reading the streams of one `changes` request shares.
struct Reading<'a> {
    q: &'a ChangesQuery,
    store: crate::store::Reader<'a>,
    index: std::sync::Arc<crate::index::SiteIndex>,
    findings: Vec<String>,
}

impl Reading<'_> {
    /// Reads up to `n` more rows of `stream` and returns the events among
    /// them that pass the filters the store could not apply.
    fn next_chunk(&self, stream: &mut Stream, n: usize) -> Result<Vec<Event>, StoreError> {
        let q = self.q;
        let after = stream.after.as_ref();
        let mut events = Vec::new();
        let read = match stream.kind {
            EventKind::Observation => {
                let rows = self.store.observations_in(
                    stream.rect,
                    q.since,
                    q.until,
                    &self.findings,
                    after,
                    n,
                )?;
                let last = rows.last().map(|o| Before {
                    time: o.observed_at.to_rfc3339(),
                    id: o.id.clone(),
                });
                let count = rows.len();
                for o in rows {
                    let declared_ok = q.declaration.is_empty()
                        || o.sites.iter().any(|l| {
                            self.index
                                .get(&l.site_id)
                                .is_some_and(|s| q.declaration.contains(&s.declaration))
                        });
                    if declared_ok {
                        events.push(observation_event(o));
                    }
                }
                (count, last)
            }
            EventKind::Revision => {
                let rows = match stream.rect {
                    None => self
                        .store
                        .revisions_between(None, q.since, q.until, after, n)?,
                    Some(rect) => self
                        .store
                        .revisions_in_area(rect, q.since, q.until, after, n)?,
                };
                let last = rows.last().map(|r| Before {
                    time: r.recorded_at.to_rfc3339(),
                    id: r.key(),
                });
                let count = rows.len();
                for r in rows {
                    // Stored features were checked on the way in: the tests
                    // need only the rings and the declaration.
                    let Some(parts) = geojson_parts(&r.feature["geometry"]) else {
                        continue;
                    };
                    let in_area = q.bbox.as_ref().is_none_or(|b| parts_meet_bbox(&parts, b));
                    let declared = || {
                        r.feature["properties"]["declaration"]
                            .as_str()
                            .and_then(|d| Declaration::parse("declaration", d).ok())
                            .is_some_and(|d| q.declaration.contains(&d))
                    };
                    if in_area && (q.declaration.is_empty() || declared()) {
                        events.push(revision_event(r));
                    }
                }
                (count, last)
            }
            EventKind::Candidate => {
                let rows =
                    self.store
                        .candidate_ids_between(stream.rect, q.since, q.until, after, n)?;
                let last = rows.last().map(|(id, time)| Before {
                    time: time.clone(),
                    id: id.clone(),
                });
                let count = rows.len();
                for (id, _) in rows {
                    if let Some(c) = self.store.candidate(&id)? {
                        events.push(Event {
                            time: c.created_at.to_rfc3339(),
                            kind: EventKind::Candidate,
                            id,
                            row: Row::Candidate(Box::new(c)),
                        });
                    }
                }
                (count, last)
            }
        };
        let (count, last) = read;
        stream.read = true;
        stream.ended = count < n;
        if last.is_some() {
            stream.after = last;
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paged(cat: &Catalogue, order: Order, limit: usize) -> Vec<Value> {
        let id = SiteId::parse("id", "yongbyon").unwrap();
        let mut q = HistoryQuery {
            order,
            limit,
            ..HistoryQuery::default()
        };
        let mut all = Vec::new();
        loop {
            let page = cat.site_history(&id, &q).unwrap().unwrap();
            assert!(page.events.len() <= limit);
            all.extend(page.events);
            match page.next {
                Some(c) => q.after = Some(c),
                None => return all,
            }
        }
    }

    #[test]
    fn paging_through_a_site_history_in_either_order_gives_every_event_once() {
        let cat = Catalogue::from_store(crate::store::SqliteStore::open_in_memory().unwrap())
            .unwrap()
            .0;
        // Three observations share each second, so pages break inside ties.
        let features: Vec<Value> = (0..61)
            .map(|i| {
                json!({"type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [125.75, 39.8]},
                    "properties": {"observed_at": format!("2023-05-01T00:00:{:02}Z", i / 3),
                        "sensor": "test", "finding": "no_change", "site_id": "yongbyon"}})
            })
            .collect();
        let batch = json!({"type": "FeatureCollection", "features": features}).to_string();
        let report = cat
            .import_observations(batch.as_bytes(), "test", &Default::default(), |_, _| {})
            .unwrap();
        assert!(report.stored, "{}", report.summary);

        let whole = paged(&cat, Order::OldestFirst, 10_000);
        let key = |e: &Value| {
            let p = &e["properties"];
            (
                p["time"].as_str().unwrap().to_owned(),
                p["event"].as_str().unwrap().to_owned(),
            )
        };
        assert!(whole.len() > 61, "{} events", whole.len());
        assert!(whole.windows(2).all(|w| key(&w[0]).0 <= key(&w[1]).0));
        for limit in [1, 2, 7, 100] {
            assert_eq!(
                paged(&cat, Order::OldestFirst, limit),
                whole,
                "limit {limit}"
            );
            let mut newest = paged(&cat, Order::NewestFirst, limit);
            newest.reverse();
            assert_eq!(newest, whole, "newest first, limit {limit}");
        }
    }

    #[test]
    fn a_cursor_survives_its_text_form() {
        let c = Cursor {
            time: "2024-01-01T00:00:00.000000Z".into(),
            kind: EventKind::Revision,
            id: "yongbyon#0000000002".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("garbage"), None);
    }

    #[test]
    fn at_the_cursor_instant_earlier_kinds_come_next_and_later_kinds_are_done() {
        let c = Cursor {
            time: "t".into(),
            kind: EventKind::Revision,
            id: "m".into(),
        };
        assert_eq!(c.bound_for(EventKind::Observation).id, "~");
        assert_eq!(c.bound_for(EventKind::Revision).id, "m");
        assert_eq!(c.bound_for(EventKind::Candidate).id, "");
    }
}
