//! Runs a function in a child process and a pool, from a program that never calls
//! `mpshm::process::child_main()`: the children are taken over before `main` by mpshm's
//! start-up hook. Prints who ran what.
//!
//! ```text
//! cargo run --release --example process_spawn
//! ```

use mpshm::process::{Pool, Process, current_process, parent_process};

fn whoami(tag: String) -> String {
    let me = current_process();
    let parent = parent_process().map_or_else(|| "none".to_owned(), |p| p.name);
    format!("{tag}: {} (pid {}), parent {parent}", me.name, me.pid)
}

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), mpshm::ProcessError> {
    println!(
        "main: {} (pid {})",
        current_process().name,
        std::process::id()
    );
    let p = Process::new(whoami, "process".to_owned());
    p.start()?;
    println!("{}", p.join()?);
    println!("exitcode {:?}", p.exitcode());

    let pool = Pool::new(2)?;
    println!("{}", pool.apply(whoami, "pool".to_owned())?);
    let squares = pool.map(square, 0..10)?;
    println!("squares {squares:?}");
    pool.close();
    pool.join()?;
    Ok(())
}
