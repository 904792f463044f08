//! `aiic-fuzz`: a mutation-fuzzing campaign over the examples and test programs.
//!
//! The campaign runs in worker processes, so that a crash (a stack overflow, an abort) or a hang
//! is caught like a panic: each worker prints the index of every case before running it; when a
//! worker dies or stops printing, the case it was on is the finding, and a new worker carries on
//! after it. Findings are written to the regressions folder, which `cargo test` replays.

use aiic_fuzz::{case, exercise, finding_name, is_deep, Corpus};
use clap::Parser;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Mutation fuzzing of aiic: mutated programs through check, code generation and a short run")]
struct Args {
    /// Number of cases.
    #[arg(long, default_value_t = 10_000)]
    cases: u64,
    /// Campaign seed: case i of seed s is always the same text.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First case index (to resume or split a campaign).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Worker processes (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Seconds one case may take before it counts as a hang.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Where findings are written.
    #[arg(long)]
    regressions: Option<PathBuf>,
    /// Print case `from` of `seed` and exit, to look at a finding.
    #[arg(long)]
    show: bool,
    /// Run cases `from`..`from + cases` in this process, printing each index first (used by the
    /// campaign itself).
    #[arg(long, hide = true)]
    worker: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let corpus = match Corpus::load(&Corpus::repository()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if args.show {
        print!("{}", case(&corpus, args.seed, args.from).0);
        return std::process::ExitCode::SUCCESS;
    }
    if args.worker {
        worker(&corpus, &args);
        return std::process::ExitCode::SUCCESS;
    }
    let findings = campaign(&corpus, &args);
    std::process::ExitCode::from(if findings == 0 { 0 } else { 1 })
}

/// Runs cases, printing `start <i>` before each and `done <i> <reached> <microseconds>` or
/// `panic <i> <location> <message>` after it.
fn worker(corpus: &Corpus, args: &Args) {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()));
        PANIC.with(|p| *p.borrow_mut() = Some(format!("{at} {}", msg.unwrap_or_default().replace('\n', " "))));
    }));
    let mut out = std::io::stdout().lock();
    for i in args.from..args.from + args.cases {
        let (text, from) = case(corpus, args.seed, i);
        let _ = writeln!(out, "start {i}");
        let _ = out.flush();
        let dir = corpus.programs[from].path.parent().map(PathBuf::from).unwrap_or_default();
        let t = Instant::now();
        match std::panic::catch_unwind(|| exercise(&text, &dir, is_deep(i))) {
            Ok(r) => {
                let _ = writeln!(out, "done {i} {r:?} {}", t.elapsed().as_micros());
            }
            Err(_) => {
                let p = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
                let _ = writeln!(out, "panic {i} {p}");
            }
        }
    }
    let _ = out.flush();
}

thread_local! {
    static PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

enum Event {
    Line(usize, String),
    Ended(usize),
}

struct Worker {
    child: Child,
    /// The case it is running, and since when.
    on: Option<(u64, Instant)>,
    /// Last index of its range.
    end: u64,
}

fn spawn(args: &Args, id: usize, from: u64, end: u64, tx: &mpsc::Sender<Event>) -> Worker {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--worker", "--seed", &args.seed.to_string(), "--from", &from.to_string()])
        .args(["--cases", &(end - from).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a worker");
    let stdout = child.stdout.take().expect("worker stdout");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(Event::Line(id, line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Ended(id));
    });
    Worker { child, on: None, end }
}

/// Runs the campaign; returns the number of findings.
fn campaign(corpus: &Corpus, args: &Args) -> usize {
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let dir = args.regressions.clone().unwrap_or_else(|| Corpus::repository().join("fuzz/regressions"));
    let _ = std::fs::create_dir_all(&dir);
    let (tx, rx) = mpsc::channel();
    let per = args.cases.div_ceil(jobs as u64);
    // Each worker process gets an id of its own, restarted ones too, so that the end of a killed
    // worker's output is never taken for the end of its successor.
    let mut workers: HashMap<usize, Worker> = HashMap::new();
    let mut next_id = 0..;
    for n in 0..jobs as u64 {
        let from = args.from + n * per;
        let end = (from + per).min(args.from + args.cases);
        if from < end {
            let id = next_id.next().expect("ids");
            workers.insert(id, spawn(args, id, from, end, &tx));
        }
    }
    let started = Instant::now();
    let (mut done, mut reached) = (0u64, HashMap::<String, u64>::new());
    let mut findings: Vec<(String, u64, String)> = Vec::new();
    let mut per_place: HashMap<String, usize> = HashMap::new();
    let mut last_report = Instant::now();
    let mut slowest: Vec<(u64, u64)> = Vec::new();
    let mut record = |kind: &str, i: u64, detail: String, findings: &mut Vec<(String, u64, String)>| {
        // Many cases hit the same fault: keep a few of each place.
        let place = detail.split(' ').next().unwrap_or("").to_string();
        let seen = per_place.entry(format!("{kind} {place}")).or_default();
        *seen += 1;
        if *seen <= 3 {
            let text = case(corpus, args.seed, i).0;
            let name = finding_name(kind, &text);
            let _ = std::fs::write(dir.join(&name), &text);
            eprintln!("\n{kind} at case {i} (seed {}): {detail}\n  kept as {}", args.seed, dir.join(&name).display());
        }
        findings.push((kind.to_string(), i, detail));
    };
    while !workers.is_empty() {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Event::Line(id, line)) => {
                let mut parts = line.splitn(3, ' ');
                let (what, i) = (parts.next().unwrap_or(""), parts.next().and_then(|s| s.parse().ok()));
                let rest = parts.next().unwrap_or("").to_string();
                let Some(w) = workers.get_mut(&id) else { continue };
                match (what, i) {
                    ("start", Some(i)) => w.on = Some((i, Instant::now())),
                    ("done", Some(i)) => {
                        w.on = None;
                        done += 1;
                        let (r, micros) = rest.split_once(' ').unwrap_or((&rest, "0"));
                        *reached.entry(r.to_string()).or_default() += 1;
                        slowest.push((micros.parse().unwrap_or(0), i));
                        slowest.sort_unstable_by(|a, b| b.cmp(a));
                        slowest.truncate(5);
                    }
                    ("panic", Some(i)) => {
                        w.on = None;
                        done += 1;
                        record("panic", i, rest, &mut findings);
                    }
                    _ => {}
                }
            }
            Ok(Event::Ended(id)) => {
                let Some(mut w) = workers.remove(&id) else { continue };
                let status = w.child.wait().ok();
                if let Some((i, _)) = w.on {
                    // It died in the middle of a case: that case crashes the process.
                    done += 1;
                    record("crash", i, format!("exit {status:?}"), &mut findings);
                    if i + 1 < w.end {
                        let id = next_id.next().expect("ids");
                        workers.insert(id, spawn(args, id, i + 1, w.end, &tx));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let hung: Vec<usize> = workers
            .iter()
            .filter(|(_, w)| w.on.is_some_and(|(_, t)| t.elapsed() > Duration::from_secs(args.timeout)))
            .map(|(id, _)| *id)
            .collect();
        for id in hung {
            let mut w = workers.remove(&id).expect("worker");
            let _ = w.child.kill();
            let _ = w.child.wait();
            let (i, _) = w.on.expect("on a case");
            done += 1;
            record("hang", i, format!("over {} s", args.timeout), &mut findings);
            if i + 1 < w.end {
                let id = next_id.next().expect("ids");
                workers.insert(id, spawn(args, id, i + 1, w.end, &tx));
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprint!(
                "\r{done}/{} cases, {rate:.0} cases/s, {} findings, about {:.0} s left   ",
                args.cases,
                findings.len(),
                (args.cases - done.min(args.cases)) as f64 / rate.max(1e-9)
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut reached: Vec<(String, u64)> = reached.into_iter().collect();
    reached.sort();
    let summary: Vec<String> = reached.iter().map(|(r, n)| format!("{n} {r}")).collect();
    eprintln!(
        "\nseed {}, cases {}..{}: {done} cases in {secs:.0} s ({:.0} cases/s, {jobs} workers): {}; {} findings",
        args.seed,
        args.from,
        args.from + args.cases,
        done as f64 / secs,
        summary.join(", "),
        findings.len()
    );
    let slow: Vec<String> = slowest.iter().map(|(us, i)| format!("case {i} {:.2} s", *us as f64 * 1e-6)).collect();
    eprintln!("slowest: {}", slow.join(", "));
    findings.len()
}
