//! The Python baselines: one `python3` process for the whole run, running `py/mp_bench.py`
//! (embedded in this executable, written to a temporary file so that Python's `spawn` can
//! import it again) and answering one case at a time (see the script's docs for the protocol).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::Sample;
use super::stats::{Hist, median};
use crate::kit::Res;

const SCRIPT: &str = include_str!("../../py/mp_bench.py");

/// The running Python side.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    script: PathBuf,
    /// What it wrote to stderr (tracebacks), for an error message.
    stderr: Arc<Mutex<String>>,
    /// Its version and default start method.
    pub about: String,
}

impl Driver {
    /// Starts `python3`; `Ok(None)` if there is none on the path.
    pub fn start() -> Res<Option<Driver>> {
        let script = std::env::temp_dir().join(format!("mpshm_bench_{}.py", std::process::id()));
        std::fs::write(&script, SCRIPT)?;
        let spawned = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&script);
                return Ok(None);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&script);
                return Err(format!("starting python3: {e}").into());
            }
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                if let Ok(mut s) = sink.lock() {
                    *s = text;
                }
            });
        }
        let to = child.stdin.take().ok_or("no pipe to python3")?;
        let from = BufReader::new(child.stdout.take().ok_or("no pipe from python3")?);
        let mut driver = Driver {
            child,
            to,
            from,
            script,
            stderr,
            about: String::new(),
        };
        let hello = driver.line()?;
        let about = hello
            .strip_prefix("hello ")
            .ok_or_else(|| format!("python3 said {hello:?}"))?;
        let mut words = about.split_whitespace();
        driver.about = format!(
            "Python {} (start method {})",
            words.next().unwrap_or("?"),
            words.next().unwrap_or("?")
        );
        Ok(Some(driver))
    }

    fn line(&mut self) -> Res<String> {
        let mut line = String::new();
        if self.from.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            return Err(format!("python3 exited ({status}): {}", err.trim()).into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Runs one case: `request` is a line of the script's protocol.
    pub fn ask(&mut self, request: &str) -> Res<Sample> {
        writeln!(self.to, "{request}")?;
        self.to.flush()?;
        let line = self.line()?;
        if let Some(err) = line.strip_prefix("err ") {
            return Err(format!("python3: {err}").into());
        }
        let mut words = line
            .strip_prefix("ok ")
            .ok_or_else(|| format!("python3 said {line:?}"))?
            .split_whitespace();
        let mut next = || words.next().ok_or("a short answer from python3");
        let ops: u64 = next()?.parse()?;
        let secs: f64 = next()?.parse()?;
        let how = next()?.to_owned();
        let values: Vec<f64> = words.map(str::parse).collect::<Result<_, _>>()?;
        let mut hist = Hist::default();
        for &v in &values {
            hist.add(v);
        }
        let per_op = match how.as_str() {
            "median" => median(&values).ok_or("no values from python3")? / 1e9,
            _ if ops == 0 => return Err("python3 did nothing".into()),
            _ => secs / ops as f64,
        };
        Ok(Sample { per_op, hist })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.to, "quit");
        let _ = self.to.flush();
        // It closes its pool and manager and exits; give it a moment, then make sure.
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.script);
    }
}
