//! The names of a layer's sites as one lowercase column, so that "which names
//! contain this text" is one vectorised scan of a few tens of megabytes at a
//! million sites, not a million lowercasings and string searches.

use crate::model::Site;
use memchr::memmem;
use std::sync::Arc;

/// Separates names in the column. A control character, so that ordinary text
/// never holds it; a needle that does is searched for without the column.
const SEPARATOR: u8 = 0;

/// Every name and alternate name of a layer's sites, lowercased, one after
/// the other in slot order.
#[derive(Debug, Default)]
pub(super) struct NameColumn {
    text: Vec<u8>,
    /// Where each slot's names start in `text`.
    starts: Vec<usize>,
}

/// The text a name search compares: the name in lowercase.
pub fn folded(name: &str) -> String {
    name.to_lowercase()
}

/// Whether one of the site's names, lowercased, contains `needle` (which is
/// lowercase already).
pub fn name_contains(site: &Site, needle: &str) -> bool {
    site.names().any(|n| folded(n).contains(needle))
}

impl NameColumn {
    pub(super) fn build(sites: &[Arc<Site>]) -> Self {
        let mut text = Vec::with_capacity(sites.len() * 32);
        let mut starts = Vec::with_capacity(sites.len());
        for site in sites {
            starts.push(text.len());
            for name in site.names() {
                text.push(SEPARATOR);
                text.extend_from_slice(folded(name).as_bytes());
            }
        }
        Self { text, starts }
    }

    /// The slots, in ascending order, with a name containing `needle`; `None`
    /// when the needle cannot be searched in the column (it holds the
    /// separator) and the caller must compare each site.
    pub(super) fn slots_containing(&self, needle: &str) -> Option<Vec<usize>> {
        self.slots_containing_at_most(needle, usize::MAX)
    }

    /// [`NameColumn::slots_containing`], or `None` as soon as more than
    /// `most` slots match: a caller that wants a few of many does better to
    /// walk the sites in order.
    pub(super) fn slots_containing_at_most(&self, needle: &str, most: usize) -> Option<Vec<usize>> {
        if needle.as_bytes().contains(&SEPARATOR) {
            return None;
        }
        let mut slots: Vec<usize> = Vec::new();
        let finder = memmem::Finder::new(needle.as_bytes());
        let mut from = 0;
        while let Some(at) = finder.find(&self.text[from..]) {
            let at = from + at;
            let slot = self.starts.partition_point(|&s| s <= at) - 1;
            slots.push(slot);
            if slots.len() > most {
                return None;
            }
            // One hit per site is enough: go on from the next site's names.
            from = self
                .starts
                .get(slot + 1)
                .copied()
                .unwrap_or(self.text.len());
            if needle.is_empty() {
                // An empty needle is in every name; step so the loop ends.
                from = from.max(at + 1);
            }
            if from >= self.text.len() {
                break;
            }
        }
        Some(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sites(names: &[(&str, &[&str])]) -> Vec<Arc<Site>> {
        crate::synth::sites(names.len(), 7)
            .into_iter()
            .zip(names)
            .map(|(mut s, (name, alts))| {
                s.name = (*name).to_owned();
                s.alt_names = alts.iter().map(|a| (*a).to_owned()).collect();
                Arc::new(s)
            })
            .collect()
    }

    #[test]
    fn a_search_finds_each_site_once_whichever_of_its_names_holds_the_text() {
        let sites = sites(&[
            (
                "Yongbyon",
                &["Nyongbyon", "Yongbyon Nuclear Research Centre"],
            ),
            ("Sohae", &[]),
            ("Punggye-ri", &["PUNGGYE"]),
        ]);
        let column = NameColumn::build(&sites);
        assert_eq!(column.slots_containing("yongbyon"), Some(vec![0]));
        assert_eq!(column.slots_containing("punggye"), Some(vec![2]));
        assert_eq!(column.slots_containing("o"), Some(vec![0, 1]));
        assert_eq!(column.slots_containing("nowhere"), Some(vec![]));
    }

    #[test]
    fn a_match_never_spans_two_names() {
        let sites = sites(&[("ab", &["cd"]), ("x", &[])]);
        let column = NameColumn::build(&sites);
        assert_eq!(column.slots_containing("bc"), Some(vec![]));
        assert_eq!(column.slots_containing("dx"), Some(vec![]));
    }

    proptest! {
        #[test]
        fn the_column_finds_exactly_the_sites_a_scan_finds(
            names in proptest::collection::vec(("[a-cA-CÄä -]{0,6}", proptest::collection::vec("[a-cÄ]{0,4}", 0..3)), 1..40),
            needle in "[a-cä -]{0,3}",
        ) {
            let refs: Vec<(&str, Vec<&str>)> = names
                .iter()
                .map(|(n, alts)| (n.as_str(), alts.iter().map(String::as_str).collect()))
                .collect();
            let table: Vec<(&str, &[&str])> = refs.iter().map(|(n, a)| (*n, a.as_slice())).collect();
            let sites = sites(&table);
            let column = NameColumn::build(&sites);
            let scan: Vec<usize> = (0..sites.len()).filter(|&i| name_contains(&sites[i], &needle)).collect();
            prop_assert_eq!(column.slots_containing(&needle), Some(scan));
        }
    }
}
