//! The children this process started with [`Process`](crate::process::Process), for
//! [`active_children`](crate::process::active_children): Python's `_children` set.
//!
//! `start` records each child's pid, name and a weak reference to the pidfd its handle holds.
//! A child counts as active while its handle lives (a dropped handle has waited for it or
//! killed it) and its pidfd is not readable (a pidfd becomes readable when its process exits).
//! Entries of dropped handles are removed at every `start` and every listing, so the list is
//! as long as the live handles. Python's `_cleanup` also reaps the children it finds ended;
//! here the handle keeps that job, because the exit status and the result it collects belong
//! to the handle.
//!
//! The list belongs to the process that made it: a forked child finds its parent's entries in
//! its copy of memory, and drops them the first time it looks (the list records its owner's
//! pid), as Python's `_bootstrap` empties `_children`.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::process::{ProcessInfo, Relation};
use crate::sys;

struct Entry {
    pid: u32,
    name: String,
    pidfd: Weak<OwnedFd>,
}

struct Registry {
    /// The pid of the process whose children these are.
    owner: u32,
    children: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    owner: 0,
    children: Vec::new(),
});

/// The list, emptied first if this process is a fork of the one that filled it.
fn registry() -> MutexGuard<'static, Registry> {
    let mut r = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let me = std::process::id();
    if r.owner != me {
        r.owner = me;
        r.children.clear();
    }
    r
}

/// Records a child that was just started.
pub(crate) fn register(pid: u32, name: &str, pidfd: &Arc<OwnedFd>) {
    let mut r = registry();
    r.children.retain(|c| c.pidfd.strong_count() > 0);
    r.children.push(Entry {
        pid,
        name: name.to_owned(),
        pidfd: Arc::downgrade(pidfd),
    });
}

/// Whether the child behind `pidfd` has not exited; false once its handle is gone.
pub(crate) fn runs(pidfd: &Weak<OwnedFd>) -> bool {
    pidfd.upgrade().is_some_and(|fd| {
        matches!(
            sys::poll_readable(&[&fd], Some(Duration::ZERO)).as_deref(),
            Ok([false])
        )
    })
}

/// The children that run, in the order they were started; the others leave the list.
pub(crate) fn active() -> Vec<ProcessInfo> {
    let mut r = registry();
    // The entries whose handle lives, each with its pidfd held for the poll.
    let live: Vec<(Entry, Arc<OwnedFd>)> = std::mem::take(&mut r.children)
        .into_iter()
        .filter_map(|c| c.pidfd.upgrade().map(|fd| (c, fd)))
        .collect();
    let fds: Vec<&OwnedFd> = live.iter().map(|(_, fd)| &**fd).collect();
    // One poll for all: readable means exited. On an error (out of memory for the poll set),
    // every child with a live handle counts as running, and none leaves the list.
    let exited =
        sys::poll_readable(&fds, Some(Duration::ZERO)).unwrap_or_else(|_| vec![false; fds.len()]);
    r.children = live
        .into_iter()
        .zip(exited)
        .filter(|(_, exited)| !exited)
        .map(|((c, _), _)| c)
        .collect();
    let me = std::process::id();
    r.children
        .iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid,
            ppid: me,
            relation: Relation::Child(super::ChildFd(c.pidfd.clone())),
        })
        .collect()
}
