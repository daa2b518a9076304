//! A child sends a Python-style list through a duplex `Pipe`, the parent receives it: seed 001
//! "Pipe" (`pros_communication_pipe`) and seed 002 "Pipes".
//!
//! ```text
//! cargo run --release --features serde --example pipe_hello
//! ```
//!
//! Python's `[42, None, 'hello']` is a tuple here, sent with `send_serde` (feature `serde`);
//! `send`/`recv` carry plain-data types and `send_bytes`/`recv_bytes` bytes without it. An end
//! of a pipe belongs to one process at a time: the parent releases the child's end, and the
//! child opens it by the pipe's name.

mod common;

use mpshm::Pipe;
use mpshm::prelude::*;
use mpshm::process::Process;

fn f(conn: String) {
    let conn = mpshm::Connection::open(&conn).expect("open the pipe");
    conn.send_serde(&(42, None::<i32>, "hello"))
        .expect("the parent's end is open");
    conn.close();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (parent_conn, child_conn) = Pipe::create(&common::name("pipe-hello"))?;
    println!("{parent_conn:?} {child_conn:?}");
    let name = child_conn.name().to_owned();
    child_conn.release();
    let p = Process::new(f, name);
    p.start()?;
    // prints "(42, None, "hello")"
    println!(
        "{:?}",
        parent_conn.recv_serde::<(i32, Option<i32>, String)>()?
    );
    p.join()?;
    Ok(())
}
