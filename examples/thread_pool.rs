//! A pool of threads for I/O-bound work, with the same interface as the process pool: seed 004
//! "多线程" (`multiprocessing.dummy`'s `Pool` opening URLs).
//!
//! ```text
//! cargo run --release --example thread_pool
//! ```
//!
//! `ThreadPool` is Python's `multiprocessing.dummy.Pool`. The seed opens web pages; so that it
//! runs anywhere (CI has no network), `urlopen` here stands in for that: it waits as a slow
//! server would and says which of the pool's threads opened the page.

mod common;

use mpshm::process::ThreadPool;

/// Stands in for `urllib2.urlopen(url)`: waits for the "network".
fn urlopen(url: String) -> String {
    common::sleep(0.5);
    let thread = std::thread::current();
    format!("{url} opened by {}", thread.name().unwrap_or("a thread"))
}

fn main() -> Result<(), mpshm::ProcessError> {
    let urls = [
        "http://www.python.org",
        "http://www.python.org/about/",
        "http://www.onlamp.com/pub/a/python/2003/04/17/metaclasses.html",
        "http://www.python.org/doc/",
        "http://www.python.org/download/",
        "http://www.python.org/getit/",
        "http://www.python.org/community/",
        "https://wiki.python.org/moin/",
        "http://planet.python.org/",
        "https://wiki.python.org/moin/LocalUserGroups",
        "http://www.python.org/psf/",
        "http://docs.python.org/devguide/",
        "http://www.python.org/community/awards/",
    ];

    // Make the pool of workers
    let pool = ThreadPool::new(4)?;
    // Open the urls in their own threads and return the results
    let results = pool.map(urlopen, urls.map(String::from))?;
    // Close the pool and wait for the work to finish
    pool.close();
    pool.join()?;

    for result in results {
        println!("{result}");
    }
    Ok(())
}
