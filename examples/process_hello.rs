//! Start a function in a child process and wait for it, printing pids and parent pids: the
//! hello programs of every seed (000 "运行条件", 001 `create_child_pro`, 002 "Process类简介",
//! 003 "一、并发实现" `info`/`ff`, 004 "多进程" 1).
//!
//! ```text
//! cargo run --release --example process_hello
//! ```
//!
//! Python passes `target` and `args`; here the function is a plain `fn` taking one argument
//! (a tuple for several). Where Python prints the module name (`__main__`, `__mp_main__` in a
//! child), this prints the process name.

use mpshm::process::{Process, current_process};

fn job((_a, _d): (i32, i32)) {
    println!("aaaaaa");
}

fn run_proc(name: String) {
    println!("Run child process {name} ({})...", std::process::id());
}

fn info(title: &str) {
    let me = current_process();
    println!("{title}");
    println!("process name: {}", me.name);
    println!("parent process: {}", me.ppid);
    println!("process id: {}", me.pid);
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Seed 000.
    let p1 = Process::new(job, (1, 2));
    p1.start()?;
    p1.join()?;

    // Seed 001 (004 is the same with "Main process" and "test finished!").
    println!("Parent process {}.", std::process::id());
    let p = Process::new(run_proc, "test".to_owned());
    println!("Process will start.");
    p.start()?;
    p.join()?;
    println!("Process end.");

    // Seeds 002 and 003.
    info("main line");
    let p = Process::new(f, "bob".to_owned());
    p.start()?;
    println!("{} {}", p.name(), p.pid().unwrap_or_default());
    p.join()?;
    Ok(())
}
