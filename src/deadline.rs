//! Deadlines for work done on behalf of a request. The work runs on a blocking
//! thread with its deadline set there; the store's connections check it while
//! a statement runs and interrupt the statement once it has passed, so no
//! request can keep a database busy after it has been answered.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The work was stopped because its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deadline for this work passed before it finished")]
pub struct Expired;

/// Runs `work` on this thread with `deadline` in force (none if `None`), and
/// restores the one before afterwards, even if `work` panics.
pub fn run_until<T>(deadline: Option<Instant>, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEADLINE.with(|d| d.replace(deadline)));
    work()
}

/// Whether the deadline in force on this thread has passed.
pub fn expired() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|d| Instant::now() >= d))
}

/// `Err(Expired)` once the deadline in force on this thread has passed: for
/// long loops outside the database to call now and then.
pub fn check() -> Result<(), Expired> {
    if expired() { Err(Expired) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_is_in_force_only_inside_its_work_and_on_its_thread() {
        assert!(!expired());
        let past = Instant::now();
        run_until(Some(past), || {
            assert!(expired());
            assert_eq!(check(), Err(Expired));
            std::thread::spawn(|| assert!(!expired())).join().unwrap();
            run_until(None, || assert!(!expired()));
            assert!(expired());
        });
        assert!(!expired());
        let later = Instant::now() + Duration::from_secs(3600);
        run_until(Some(later), || assert!(!expired()));
    }

    #[test]
    fn the_deadline_before_is_restored_when_the_work_panics() {
        let outer = Instant::now() + Duration::from_secs(3600);
        run_until(Some(outer), || {
            let r = std::panic::catch_unwind(|| run_until(Some(Instant::now()), || panic!("boom")));
            assert!(r.is_err());
            assert!(!expired());
        });
    }
}
