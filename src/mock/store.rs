//! The event store: one `Vec` sorted by `(created_at, id)`, so a time window
//! is two binary searches and an unfiltered page is a slice.

use std::ops::Range;

use super::generate::Event;

/// The `after`/`before` bounds of a query and whether each is inclusive.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub after_inclusive: bool,
    pub before_inclusive: bool,
}

/// `user_id[]` and `operation_name[]` filters as bitsets over table indices.
/// `Some` with no bits set is a filter that matched no known value: it selects nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub users: Option<[u64; 4]>,
    pub ops: Option<Vec<u64>>,
}

fn bit(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

pub(crate) fn set_bit(set: &mut [u64], i: usize) {
    set[i / 64] |= 1 << (i % 64);
}

impl Filter {
    pub(crate) fn is_none(&self) -> bool {
        self.users.is_none() && self.ops.is_none()
    }

    fn matches(&self, ev: &Event) -> bool {
        self.users.as_ref().is_none_or(|u| bit(u, usize::from(ev.user)))
            && self.ops.as_ref().is_none_or(|o| bit(o, usize::from(ev.op)))
    }
}

pub(crate) struct Store {
    events: Vec<Event>,
    last_id: u64,
}

impl Store {
    pub(crate) fn new(mut events: Vec<Event>, floor_id: u64) -> Store {
        events.sort_unstable_by_key(Event::key);
        let last_id = events.iter().map(|e| e.id).max().unwrap_or(floor_id).max(floor_id);
        Store { events, last_id }
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn last_id(&self) -> u64 {
        self.last_id
    }

    pub(crate) fn newest_created_at(&self) -> Option<i64> {
        self.events.last().map(|e| e.created_at)
    }

    /// Every id, ascending (late arrivals make id order differ from storage order).
    pub(crate) fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.events.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Ids of the events `f` picks, ascending.
    pub(crate) fn ids_where(&self, f: impl Fn(&Event) -> bool) -> Vec<u64> {
        let mut ids: Vec<u64> = self.events.iter().filter(|e| f(e)).map(|e| e.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Adds an event whose id is above every stored id; its `created_at` may lie in the past.
    pub(crate) fn insert(&mut self, ev: Event) {
        debug_assert!(ev.id > self.last_id);
        self.last_id = ev.id;
        let at = self.events.partition_point(|e| e.key() <= ev.key());
        self.events.insert(at, ev);
    }

    /// Indices of the events inside the window.
    pub(crate) fn range(&self, w: &Window) -> Range<usize> {
        let ev = &self.events;
        let lo = match w.after {
            None => 0,
            Some(a) if w.after_inclusive => ev.partition_point(|e| e.created_at < a),
            Some(a) => ev.partition_point(|e| e.created_at <= a),
        };
        let hi = match w.before {
            None => ev.len(),
            Some(b) if w.before_inclusive => ev.partition_point(|e| e.created_at <= b),
            Some(b) => ev.partition_point(|e| e.created_at < b),
        };
        lo..hi.max(lo)
    }

    /// Total matches and the events of 1-based `page`, newest first. Unfiltered
    /// queries never look at more than the page itself; filtered ones scan the window.
    pub(crate) fn page(&self, w: &Window, filter: &Filter, per_page: usize, page: usize) -> (usize, Vec<Event>) {
        let range = self.range(w);
        let skip = (page - 1).saturating_mul(per_page);
        if filter.is_none() {
            let count = range.len();
            let end = range.end.saturating_sub(skip).max(range.start);
            let start = end.saturating_sub(per_page).max(range.start);
            return (count, self.events[start..end].iter().rev().copied().collect());
        }
        let mut count = 0;
        let mut out = Vec::new();
        for ev in self.events[range].iter().rev() {
            if filter.matches(ev) {
                if count >= skip && out.len() < per_page {
                    out.push(*ev);
                }
                count += 1;
            }
        }
        (count, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(created_at: i64, id: u64, user: u8, op: u16) -> Event {
        Event { created_at, id, ip: 0, op, user, agent: 0, outputs: false, script: 0, odd: Default::default() }
    }

    fn store() -> Store {
        // Three events per second from t=100 to t=109.
        let events = (0..30).map(|i| ev(100 + i / 3, 1000 + i as u64, (i % 5) as u8, (i % 7) as u16)).collect();
        Store::new(events, 0)
    }

    #[test]
    fn window_bounds_follow_inclusiveness() {
        let s = store();
        let mut w = Window { after: Some(102), before: Some(105), ..Window::default() };
        assert_eq!(s.range(&w).len(), 6); // 103, 104
        w.after_inclusive = true;
        assert_eq!(s.range(&w).len(), 9); // 102..=104
        w.before_inclusive = true;
        assert_eq!(s.range(&w).len(), 12); // 102..=105
        w.after = Some(200);
        assert!(s.range(&w).is_empty());
    }

    #[test]
    fn pages_walk_newest_first_and_past_the_end_is_empty() {
        let s = store();
        let all = Window::default();
        let mut seen = Vec::new();
        for p in 1..=4 {
            let (count, page) = s.page(&all, &Filter::default(), 8, p);
            assert_eq!(count, 30);
            seen.extend(page.iter().map(|e| e.id));
        }
        assert_eq!(seen, (1000..1030).rev().collect::<Vec<_>>());
        assert!(s.page(&all, &Filter::default(), 8, 5).1.is_empty());
        assert!(s.page(&all, &Filter::default(), 8, usize::MAX).1.is_empty());
    }

    #[test]
    fn filters_count_and_page_matches_only() {
        let s = store();
        let mut users = [0u64; 4];
        set_bit(&mut users, 2);
        let f = Filter { users: Some(users), ops: None };
        let (count, page) = s.page(&Window::default(), &f, 4, 2);
        assert_eq!(count, 6);
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1007, 1002]);
        let nothing = Filter { users: None, ops: Some(vec![0; 7]) };
        assert_eq!(s.page(&Window::default(), &nothing, 4, 1).0, 0);
    }

    #[test]
    fn late_insert_keeps_order_and_ids_sorted() {
        let mut s = store();
        s.insert(ev(101, 2000, 0, 0));
        assert_eq!(s.newest_created_at(), Some(109));
        let ids = s.ids();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let (_, page) =
            s.page(&Window { after: Some(100), before: Some(102), ..Window::default() }, &Filter::default(), 10, 1);
        assert_eq!(page[0].id, 2000);
        assert_eq!(page.len(), 4);
    }
}
