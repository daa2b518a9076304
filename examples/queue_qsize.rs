//! Parent and children trading Python-style lists through a `Queue`, printing its size as it
//! goes: seed 003 "Queue模块", both programs (the first, then the improved one).
//!
//! ```text
//! cargo run --release --features serde --example queue_qsize
//! ```
//!
//! Python's `[x, 'None', 'test']` is a tuple here, so the queue is a `SerdeQueue` (feature
//! `serde`); `len` is Python's `qsize`, `is_empty` its `empty`.

mod common;

use common::{ctime, sleep};
use mpshm::SerdeQueue;
use mpshm::prelude::*;
use mpshm::process::{Process, current_process};

type Message = (u32, String, String);

fn p_con((_q, x): (String, u32)) {
    sleep(2.0);
    let me = current_process();
    println!(
        "{} child process [{x}] name:{} parent_process_id:{} process id:{}",
        ctime(),
        me.name,
        me.ppid,
        me.pid
    );
}

fn write((q, n): (String, u32)) {
    let q = SerdeQueue::<Message>::open(&q).expect("open the queue");
    for x in 0..n {
        q.put((x, "None".to_owned(), "test".to_owned()))
            .expect("the queue is open");
    }
}

fn read(q: String) {
    let q = SerdeQueue::<Message>::open(&q).expect("open the queue");
    println!("{:?}", q.get().expect("the queue is open"));
}

fn report(q: &SerdeQueue<Message>) {
    if q.is_empty() {
        println!("all messages read");
    } else {
        println!("messages left unread");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The first program: the parent writes five messages, then takes one per child.
    let q = SerdeQueue::<Message>::create(&common::name("queue-qsize"), (8, 64))?;
    let name = q.name().to_owned();
    write((name.clone(), 5));
    for i in 0..5 {
        let p = Process::new(p_con, (name.clone(), i));
        p.start()?;
        println!("{:?} {}", q.get()?, q.len());
        p.join()?;
    }
    report(&q);

    // The improved one: a writer process, and reader processes while the parent works too.
    let p_writer = Process::new(write, (name.clone(), 2));
    p_writer.start()?;
    p_con((name.clone(), 0));
    p_writer.join()?;
    for i in 1..3 {
        let p = Process::new(read, name.clone());
        p.start()?;
        p_con((name.clone(), i));
        println!("{}", q.len());
        p.join()?;
    }
    report(&q);
    Ok(())
}
