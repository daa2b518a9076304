//! Five processes started in a loop, each sleeping and then saying who it is: seed 003
//! "一、并发实现" (`work`).
//!
//! ```text
//! cargo run --release --example process_loop
//! ```

mod common;

use common::{ctime, sleep};
use mpshm::process::{Process, current_process};

fn work(x: u32) {
    sleep(5.0);
    let me = current_process();
    println!(
        "{} child process [{x}] name:{} parent_process_id:{} process id:{}",
        ctime(),
        me.name,
        me.ppid,
        me.pid
    );
}

fn main() -> Result<(), mpshm::ProcessError> {
    let mut processes = Vec::new();
    for i in 0..5 {
        let p = Process::new(work, i);
        println!("starting process {i}");
        p.start()?;
        processes.push(p);
    }
    // Python waits for its children at exit; here we say so.
    for p in processes {
        p.join()?;
    }
    Ok(())
}
