//! HTTP load against one endpoint of a running agent: `wrk` when it is
//! installed, else an in-process generator (tokio, raw HTTP/1.1 over
//! keep-alive connections) that does what `wrk -t T -c C -d D` does:
//! `T` runtime threads, `C` connections, each sending its next request
//! as soon as the previous answer has arrived, for `D`.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::percentile;

/// How the load is made.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    /// Threads (wrk's `-t`; the in-process runtime's worker threads).
    pub threads: usize,
    /// Connections kept open (wrk's `-c`).
    pub connections: usize,
    /// How long (wrk's `-d`).
    pub duration: Duration,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// What made the load: `wrk 4.1.0` or `in-process`.
    pub tool: String,
    /// Answers received.
    pub requests: u64,
    /// Answers other than 200, and socket errors.
    pub errors: u64,
    /// Answers per second over the run.
    pub per_second: f64,
    /// The median and 99th percentile latency of a request, ms.
    pub p50_ms: f64,
    /// The 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Whether `wrk` can be run.
pub fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Loads `GET path` on `127.0.0.1:port` with `shape`: with `wrk` when
/// installed, else in-process. Err names what went wrong.
pub fn load(port: u16, path: &str, shape: LoadShape) -> Result<LoadResult, String> {
    if wrk_installed() {
        wrk(port, path, shape)
    } else {
        in_process(port, path, shape)
    }
}

/// `wrk --latency`, its summary parsed.
pub fn wrk(port: u16, path: &str, shape: LoadShape) -> Result<LoadResult, String> {
    let out = Command::new("wrk")
        .arg(format!("-t{}", shape.threads))
        .arg(format!("-c{}", shape.connections))
        .arg(format!("-d{}s", shape.duration.as_secs().max(1)))
        .arg("--latency")
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's summary:\n{text}"))
}

/// The figures of wrk's `--latency` summary.
fn parse_wrk(text: &str) -> Option<LoadResult> {
    let line_after = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    };
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let per_second: f64 = line_after("Requests/sec:")?.parse().ok()?;
    let non_2xx: u64 = line_after("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket: u64 = line_after("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(LoadResult {
        tool: "wrk".into(),
        requests,
        errors: non_2xx + socket,
        per_second,
        p50_ms: wrk_duration_ms(line_after("50%")?)?,
        p99_ms: wrk_duration_ms(line_after("99%")?)?,
    })
}

/// `812.00us`, `1.20ms`, `2.01s` in ms.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text.strip_suffix('s')?, 1000.0)
    };
    Some(number.trim().parse::<f64>().ok()? * scale)
}

/// The in-process generator: `shape.connections` keep-alive connections
/// on a runtime of `shape.threads` worker threads.
pub fn in_process(port: u16, path: &str, shape: LoadShape) -> Result<LoadResult, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shape.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pgwarden-bench\r\n\r\n"
    );
    let started = Instant::now();
    let until = started + shape.duration;
    let per_connection: Vec<Result<Connection, String>> = runtime.block_on(async {
        let tasks: Vec<_> = (0..shape.connections)
            .map(|_| tokio::spawn(one_connection(port, request.clone(), until)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let (mut requests, mut errors) = (0, 0);
    for c in per_connection {
        let c = c?;
        requests += c.latencies_us.len() as u64;
        errors += c.errors;
        latencies.extend(c.latencies_us.iter().map(|us| *us as f64 / 1000.0));
    }
    Ok(LoadResult {
        tool: "in-process".into(),
        requests,
        errors,
        per_second: requests as f64 / elapsed,
        p50_ms: percentile(&mut latencies, 50.0),
        p99_ms: percentile(&mut latencies, 99.0),
    })
}

/// What one connection saw.
struct Connection {
    /// The latency of each answered request, µs.
    latencies_us: Vec<u32>,
    /// Answers other than 200.
    errors: u64,
}

/// Requests on one keep-alive connection until `until`.
async fn one_connection(port: u16, request: String, until: Instant) -> Result<Connection, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut seen = Connection {
        latencies_us: Vec::new(),
        errors: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    while Instant::now() < until {
        let sent = Instant::now();
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let status = read_answer(&mut stream, &mut buf).await?;
        seen.latencies_us
            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if status != 200 {
            seen.errors += 1;
        }
    }
    Ok(seen)
}

/// Reads one answer (head, then a `Content-Length` body) from `stream`;
/// bytes past it stay in `buf` for the next. Returns the status code.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or_else(|| format!("an answer without Content-Length: {head:?}"))?;
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(stream, buf).await?;
    }
}

/// Appends what `stream` has to `buf`; Err when it closed.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("the agent closed the connection".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:20001/primary
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.52us  301.11us  12.41ms   91.20%
    Req/Sec    19.80k     1.20k   22.10k    70.00%
  Latency Distribution
     50%  350.00us
     75%  480.00us
     90%  650.00us
     99%    1.52ms
  394123 requests in 10.00s, 60.14MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  39401.22
Transfer/sec:      6.01MB
";

    #[test]
    fn wrk_s_summary_gives_rate_percentiles_and_errors() {
        let r = parse_wrk(WRK).expect("parsed");
        assert_eq!(r.requests, 394_123);
        assert_eq!(r.errors, 3);
        assert!((r.per_second - 39_401.22).abs() < 1e-6);
        assert!((r.p50_ms - 0.35).abs() < 1e-9);
        assert!((r.p99_ms - 1.52).abs() < 1e-9);
    }

    /// A server on loopback answering every request on a connection with
    /// `200` and a small JSON body, as the agent's `/primary` does.
    fn keep_alive_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let body = r#"{"role":"primary"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let mut pending = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            if conn.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn the_in_process_generator_keeps_its_connections_busy() {
        let port = keep_alive_server();
        let shape = LoadShape {
            threads: 2,
            connections: 4,
            duration: Duration::from_millis(300),
        };
        let r = in_process(port, "/primary", shape).expect("load");
        assert_eq!(r.tool, "in-process");
        assert!(r.requests > 100, "only {} requests", r.requests);
        assert_eq!(r.errors, 0);
        assert!(r.p50_ms <= r.p99_ms);
        assert!(r.per_second > 0.0);
    }

    #[test]
    fn wrk_s_durations_in_every_unit() {
        let ms = |t: &str| wrk_duration_ms(t).expect(t);
        assert!((ms("812.00us") - 0.812).abs() < 1e-9);
        assert!((ms("1.50ms") - 1.5).abs() < 1e-9);
        assert!((ms("2.00s") - 2000.0).abs() < 1e-9);
        assert!((ms("1.00m") - 60_000.0).abs() < 1e-9);
        assert_eq!(wrk_duration_ms("soon"), None);
    }
}
