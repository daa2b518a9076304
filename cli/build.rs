//! Compiles the C floor (`c/robust_counter.c`: the locked counter and the lock owner death)
//! into this package's binary.

fn main() {
    println!("cargo::rerun-if-changed=c/robust_counter.c");
    cc::Build::new()
        .file("c/robust_counter.c")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .compile("mpshm_floor");
}
