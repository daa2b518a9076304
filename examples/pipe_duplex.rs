//! One process sends four messages into a `Pipe`, another receives two of them from the other
//! end, and the parent receives the rest: seed 003 "Pipe模块".
//!
//! ```text
//! cargo run --release --features serde --example pipe_duplex
//! ```
//!
//! Python's `[x, 'None', 'IPC_pipe_test']` is a tuple here, sent with `send_serde` (feature
//! `serde`). An end of a pipe belongs to one process at a time: the parent releases both ends,
//! the children open them by the pipe's name, the receiving child releases its end again
//! (Python's child closes only its own copy), and the parent opens it once more. Since the
//! parent holds no end in between, it keeps the pipe's name with `persist` and removes it at
//! the end.

mod common;

use mpshm::prelude::*;
use mpshm::process::Process;
use mpshm::{Connection, Pipe};

type Message = (u32, String, String);

fn pipe_send(conn: String) {
    let conn = Connection::open(&conn).expect("open the pipe");
    for x in 0..4u32 {
        conn.send_serde(&(x, "None", "IPC_pipe_test"))
            .expect("the other end is open");
    }
    conn.close();
}

fn pipe_recv(conn: &Connection) {
    for _ in 0..2 {
        let message: Message = conn.recv_serde().expect("a message");
        println!("{message:?}");
    }
}

fn pipe_recv_child(conn: String) {
    let conn = Connection::open(&conn).expect("open the pipe");
    pipe_recv(&conn);
    conn.release();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (parent_conn, child_conn) = Pipe::create(&common::name("pipe-duplex"))?;
    let name = parent_conn.name().to_owned();
    parent_conn.persist();
    parent_conn.release();
    child_conn.release();
    let p = Process::new(pipe_send, name.clone());
    let p1 = Process::new(pipe_recv_child, name.clone());
    p.start()?;
    p1.start()?;
    p.join()?;
    p1.join()?;
    // The parent receives on the end the receiving child gave back.
    let parent_conn = Connection::open(&name)?;
    pipe_recv(&parent_conn);
    mpshm::unlink(&name)?;
    Ok(())
}
