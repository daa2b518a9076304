//! What the crate tells a user about the platform it runs on: `fence_mode()` reports the slower
//! mode when the kernel refuses `membarrier` (here a seccomp filter refuses it, in a child
//! process, before the first handle or after it), and the queue keeps working in that mode.

mod common;

use std::time::Duration;

use common::{Child, name, say};
use mpshm::prelude::*;
use mpshm::{FenceMode, GetTimeoutError, Queue, fence_mode};

fn main() {
    common::run(
        tests![
            refused_from_the_start_reads_as_full_fences,
            refused_after_registering_reads_as_full_fences,
        ],
        routines![refuse_then_use, use_then_refuse],
    );
}

/// Makes every `membarrier` call of this process fail with `EPERM` from now on (a seccomp
/// filter, as a container runtime may install).
fn refuse_membarrier() {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, EPERM, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Offset 0 of `struct seccomp_data` is the system call's number (this test runs on the
    // native ABI, so the number alone names the call).
    let filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        sock_filter {
            code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_membarrier as u32,
        },
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `prog` points at `filter`, which outlives the call (the kernel
    // copies the program).
    let (nnp, installed) = unsafe {
        (
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog,
            ),
        )
    };
    assert!(
        nnp == 0 && installed == 0,
        "install the seccomp filter: {}",
        std::io::Error::last_os_error()
    );
}

/// A put and a get through a queue, then a get that sleeps until its timeout (running the
/// sleeping side's fence; this handle is a live producer, so the queue is not disconnected).
/// The handle sleeps without spinning first, so that the sleep comes however loaded the machine.
fn round_trip(q: &Queue<u64>) {
    q.set_spin(0);
    q.put(7).expect("put");
    assert_eq!(q.get_timeout(Duration::from_secs(5)).expect("get"), 7);
    let asked = Duration::from_millis(50);
    let r = common::timed(asked, || q.get_timeout(asked));
    assert!(matches!(r, Err(GetTimeoutError::Timeout)), "{r:?}");
}

/// In a child: `membarrier` refused before any handle; says the mode, then that a queue works.
fn refuse_then_use(args: &[String]) {
    refuse_membarrier();
    say(&format!("{:?}", fence_mode()));
    let q = Queue::<u64>::create(&args[0], 4).expect("queue");
    round_trip(&q);
    say(&format!("{:?}", fence_mode()));
}

/// In a child: a queue made (this process registers for `membarrier`, where the kernel has
/// it), then `membarrier` refused; says the mode once a get has waited.
fn use_then_refuse(args: &[String]) {
    let q = Queue::<u64>::create(&args[0], 4).expect("queue");
    say(&format!("{:?}", fence_mode()));
    refuse_membarrier();
    round_trip(&q);
    say(&format!("{:?}", fence_mode()));
}

fn refused_from_the_start_reads_as_full_fences() {
    let mut child = Child::spawn("refuse_then_use", &[&name("refused")]);
    assert_eq!(child.line(), format!("{:?}", FenceMode::Full));
    assert_eq!(child.line(), format!("{:?}", FenceMode::Full));
    child.join();
}

fn refused_after_registering_reads_as_full_fences() {
    let mut child = Child::spawn("use_then_refuse", &[&name("refused-late")]);
    let before = child.line();
    // This process's own mode is what the child had too (same kernel, no filter yet).
    assert_eq!(before, format!("{:?}", fence_mode()));
    assert_eq!(child.line(), format!("{:?}", FenceMode::Full));
    child.join();
}
