//! A shared dict and list changed by a child: it sets three keys and reverses the list, and the
//! parent prints both: seed 002 "Server process" and seed 003 "服务器进程" (`Manager`).
//!
//! ```text
//! cargo run --release --features serde --example manager_dict_list
//! ```
//!
//! No server process here: `SerdeDict` and `SharedList` live in shared memory and any process
//! opens them by name. Python's dict mixes key and value types, so this one holds a small enum
//! of Python values (through serde, feature `serde`); the list holds plain `i64`s.

mod common;

use std::fmt;

use mpshm::prelude::*;
use mpshm::process::Process;
use mpshm::{SerdeDict, SharedList};
use serde::{Deserialize, Serialize};

/// The Python values this program stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Py {
    Int(i64),
    Float(f64),
    Str(String),
    None,
}

impl fmt::Display for Py {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Int(i) => write!(f, "{i}"),
            Py::Float(x) => write!(f, "{x}"),
            Py::Str(s) => write!(f, "'{s}'"),
            Py::None => f.write_str("None"),
        }
    }
}

fn f((d, l): (String, String)) {
    let d = SerdeDict::<Py, Py>::open(&d).expect("open the dict");
    let l = SharedList::<i64>::open(&l).expect("open the list");
    d.insert(Py::Int(1), Py::Str("1".to_owned())).expect("room");
    d.insert(Py::Str("2".to_owned()), Py::Int(2)).expect("room");
    d.insert(Py::Float(0.25), Py::None).expect("room");
    l.reverse().expect("the list's lock");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = SerdeDict::<Py, Py>::create(&common::name("dict"), (16, 64))?;
    let l = SharedList::<i64>::create(&common::name("list"), 16)?;
    l.extend(0..10)?;

    let p = Process::new(f, (d.name().to_owned(), l.name().to_owned()));
    p.start()?;
    p.join()?;

    let items: Vec<String> = d.iter()?.map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", l.to_vec()?);
    Ok(())
}
