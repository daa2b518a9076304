//! A shared `Value` and `Array` changed by a child: it sets the number and negates every
//! element, and the parent prints what it finds: seed 002 "Shared memory" and seed 003
//! "共享内存" (with seed 000's typecodes: `'d'` is `f64`, `'i'` is `i32`).
//!
//! ```text
//! cargo run --release --example value_array
//! ```

mod common;

use mpshm::prelude::*;
use mpshm::process::Process;
use mpshm::{Array, Value};

#[allow(clippy::approx_constant, reason = "the seed's number, not π")]
fn f((n, a): (String, String)) {
    let n = Value::<f64>::open(&n).expect("open the value");
    let a = Array::<i32>::open(&a).expect("open the array");
    n.set(3.1415927).expect("the value's lock");
    for i in 0..a.len() {
        a.set(i, -a.get(i).expect("the array's lock"))
            .expect("the array's lock");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::<f64>::create(&common::name("value"), 0.0)?;
    let range: Vec<i32> = (0..10).collect();
    let arr = Array::<i32>::from_slice(&common::name("array"), &range)?;

    let p = Process::new(f, (num.name().to_owned(), arr.name().to_owned()));
    p.start()?;
    p.join()?;

    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
