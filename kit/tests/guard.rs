//! The kit's guard against a chain of re-executions: a routine runs in a child its parent
//! started through the kit, and never in a process that merely inherited the kit's variables.
//!
//! The grandchild below is started the way a careless program would start one, with a plain
//! `Command` of this executable that inherits the child's environment. Should the guard fail,
//! it would run the routine again; the routine's `deep` argument stops that at one level, so
//! this test cannot become the chain it checks for.

use std::process::{Command, Stdio};

use mpshm_kit::{Child, Spawn, routines, say};

fn main() {
    mpshm_kit::dispatch(&routines![hello, respawn_plainly]);
    let mut failed = 0;
    for (name, test) in [
        ("a_child_runs_its_routine", a_child_runs_its_routine as fn()),
        (
            "an_inherited_routine_is_refused",
            an_inherited_routine_is_refused,
        ),
        ("a_role_round_trips", a_role_round_trips),
    ] {
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

/// In a child: says hello and its arguments.
fn hello(args: &[String]) {
    say(&format!("hello {}", args.join(" ")));
}

/// In a child: starts this executable again with a plain `Command` (so the grandchild inherits
/// the kit's variables) and says how it ended and what it printed.
fn respawn_plainly(args: &[String]) {
    if args.first().is_some_and(|a| a == "deep") {
        say("the guard let an inherited routine run");
        return;
    }
    let out = Command::new(std::env::current_exe().expect("exe"))
        .arg("deep")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run the grandchild");
    say(&format!(
        "grandchild {:?} {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    ));
}

fn a_child_runs_its_routine() {
    let mut child = Child::spawn("hello", &["a", "b"]);
    assert_eq!(child.line(), "hello a b");
    child.join();
}

fn an_inherited_routine_is_refused() {
    let mut child = Child::spawn("respawn_plainly", &[]);
    assert_eq!(child.line(), r#"grandchild Some(2) """#);
    child.join();
}

fn a_role_round_trips() {
    let mut child = Spawn::role("hello x  y")
        .and_then(Spawn::spawn)
        .expect("spawn");
    assert_eq!(child.line(), "hello x  y");
    assert!(child.expect_line("more").is_err());
}
