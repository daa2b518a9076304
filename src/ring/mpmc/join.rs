//! A joinable ring's accounting (`JoinableQueue::task_done` and `join`): every message a
//! consumer takes counts as delivered, every `task_done` as done, and `join` waits until the
//! ring is empty and the two counts meet.

use std::time::Instant;

use super::{LIVENESS_POLL, READING, Ring, WRITING, diff, state};
use crate::ring::RingError;
use crate::sync::atomic::Ordering::{Acquire, Relaxed};
use crate::wait::{NoPeers, eventcount::remaining, min_opt};

impl Ring<'_> {
    /// Counts one delivered message as done. Fails when every delivered message is already
    /// done.
    pub(crate) fn task_done(&self) -> Result<(), ()> {
        let m = &self.ctl.state.0;
        let mut done = m.done.load(Relaxed);
        loop {
            if done >= m.delivered.load(Relaxed) {
                return Err(());
            }
            match m
                .done
                .compare_exchange_weak(done, done + 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(d) => done = d,
            }
        }
        m.join.wake();
        Ok(())
    }

    /// Whether every message put has been taken and marked done.
    pub(super) fn joined(&self) -> bool {
        let m = &self.ctl.state.0;
        let (head, tail) = (
            self.ctl.head.0.pos.load(Relaxed),
            self.ctl.tail.0.pos.load(Relaxed),
        );
        head == tail && m.done.load(Relaxed) == m.delivered.load(Relaxed)
    }

    /// Waits until every message put has been taken and marked done, or `deadline`.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), RingError> {
        let mut last_head = None;
        loop {
            if self.joined() {
                return Ok(());
            }
            // A dead producer's claimed slot at the head would hold `head < tail` forever, and so
            // would a consumer that died after its claim but before it moved the head on.
            let pos = self.ctl.head.0.pos.load(Relaxed);
            // Acquire: as in `try_get`.
            let w = self.slot(pos)[0].load(Acquire);
            if diff(w, pos) == 0
                && matches!(state(w), WRITING | READING)
                && self.reclaim_dead_slot(pos, w)
            {
                continue;
            }
            // Or a consumer that held its role died taking the message at the head: looked for
            // only once the head has stood still for a round (it costs a `/proc` read while the
            // holder is inside, and a live holder moves the head).
            if last_head == Some(pos)
                && self
                    .ctl
                    .consumers
                    .revoke_if_dead(|dead| self.skip_message_taken_by(dead))
            {
                continue;
            }
            last_head = Some(pos);
            let wait = remaining(deadline)?;
            self.ctl.state.0.join.park(
                min_opt(wait, Some(LIVENESS_POLL)),
                || !self.joined(),
                &NoPeers,
            );
        }
    }
}
