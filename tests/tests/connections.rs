//! Connections cannot be hoarded (SPEC §8): against the real binary, connections that never send
//! their headers, that stop halfway through them or through a body, and idle keep-alive ones are
//! closed by the proxy, while `/health` keeps answering within 2 s; past the connection bound,
//! `/health` still answers and everything else is a 503 that says why.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use assegai_e2e::{Proxy, TestEnv};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

fn addr(proxy: &Proxy) -> String {
    proxy.url.trim_start_matches("http://").to_owned()
}

/// Opens a connection, writes `prefix`, then only reads: returns when the proxy closes it, with
/// what it answered and how long after opening that was.
async fn hold(addr: String, prefix: Vec<u8>) -> JoinHandle<(Duration, Vec<u8>)> {
    let mut stream = TcpStream::connect(&addr).await.expect("connect to the proxy");
    let opened = Instant::now();
    tokio::spawn(async move {
        if !prefix.is_empty() {
            stream.write_all(&prefix).await.expect("write the prefix");
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        (opened.elapsed(), answer)
    })
}

/// Asks `/health` on a fresh connection every 100 ms until `done`; returns the slowest answer.
fn watch_health(url: String, done: Arc<Mutex<bool>>) -> JoinHandle<Duration> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let mut slowest = Duration::ZERO;
        while !*done.lock().unwrap() {
            let t = Instant::now();
            let resp = tokio::time::timeout(Duration::from_secs(5), http.get(format!("{url}/health")).send()).await;
            let took = t.elapsed();
            let ok = matches!(&resp, Ok(Ok(r)) if r.status() == 200);
            assert!(ok, "/health did not answer: {resp:?} after {took:?}");
            slowest = slowest.max(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slowest
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn hoarded_connections_are_closed_while_health_answers() {
    let env = TestEnv::new();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("hoarder", None);
    let done = Arc::new(Mutex::new(false));
    let health = watch_health(proxy.url.clone(), done.clone());

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(hold(addr(&proxy), Vec::new()).await);
    }
    let mut half_headers = Vec::new();
    for _ in 0..100 {
        half_headers.push(hold(addr(&proxy), b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Slow: ".to_vec()).await);
    }
    let mut half_bodies = Vec::new();
    let head = format!(
        "POST /agent/log HTTP/1.1\r\nHost: proxy\r\nX-Assegai-Agent-ID: {id}\r\nX-Assegai-Agent-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"level\":\"info\","
    );
    for _ in 0..100 {
        half_bodies.push(hold(addr(&proxy), head.clone().into_bytes()).await);
    }

    for (what, tasks) in [("idle", idle), ("unfinished headers", half_headers)] {
        for t in tasks {
            let (after, answer) = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .unwrap_or_else(|_| panic!("a connection with {what} was still open after 20 s"))
                .unwrap();
            assert!(after <= Duration::from_secs(15), "a connection with {what} was closed only after {after:?}");
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
                "{what}: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    for t in half_bodies {
        let (after, answer) = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("a connection with an unfinished body was still open after 20 s")
            .unwrap();
        assert!(after <= Duration::from_secs(15), "an unfinished body was closed only after {after:?}");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"REQUEST_TIMEOUT""#), "{answer}");
    }
    *done.lock().unwrap() = true;
    let slowest = health.await.unwrap();
    assert!(slowest < Duration::from_secs(2), "/health took {slowest:?}");
    // None of the half-sent log lines was stored.
    assert!(env.run_ok(&["logs", "--json"]).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed() {
    let env = TestEnv::new();
    let proxy = env.start_proxy();
    let t = hold(addr(&proxy), b"GET /health HTTP/1.1\r\nHost: proxy\r\n\r\n".to_vec()).await;
    let (after, answer) = tokio::time::timeout(Duration::from_secs(70), t).await.expect("closed within 70 s").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "kept alive at first: {answer}");
    assert!(after <= Duration::from_secs(61), "an idle keep-alive connection stayed open {after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_bound_health_answers_and_the_rest_is_told_why() {
    let env = TestEnv::new();
    env.write_config("max_connections = 20\n");
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("crowd", None);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let agent_get = |http: &reqwest::Client| {
        http.get(format!("{}/agent/transactions/tx_none", proxy.url))
            .header("X-Assegai-Agent-ID", &id)
            .header("X-Assegai-Agent-Token", &token)
            .send()
    };
    assert_eq!(agent_get(&http).await.unwrap().status(), 404);

    // Twenty connections that say nothing fill every agent slot.
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(TcpStream::connect(addr(&proxy)).await.unwrap());
    }
    // Once the proxy has accepted them all, a new connection only gets /health.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = agent_get(&http).await.unwrap();
            if r.status() == 503 {
                break r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a 503 once the bound is reached");
    assert!(refused.contains(r#""code":"TOO_MANY_CONNECTIONS""#), "{refused}");
    for _ in 0..5 {
        let t = Instant::now();
        let r = http.get(format!("{}/health", proxy.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    // Closing them frees the slots.
    drop(streams);
    tokio::time::timeout(Duration::from_secs(5), async {
        while agent_get(&http).await.unwrap().status() != 404 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the agent routes answer again once the connections are closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_sent_before_the_body_was_read_closes_the_connection() {
    let env = TestEnv::new();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("poster", None);
    let auth = format!("X-Assegai-Agent-ID: {id}\r\nX-Assegai-Agent-Token: {token}\r\n");
    let body = r#"{"level":"info","message":"kept"}"#;
    // A body the handler reads: the connection stays open for the next request.
    let read = format!(
        "POST /agent/log HTTP/1.1\r\nHost: proxy\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Refused before the body is looked at (no such provider in the manifest): `Connection: close`,
    // so the client does not send its next request into a closing socket.
    let refused = format!(
        "POST /api/openai/v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for (request, status, closes) in [(read, "HTTP/1.1 200", false), (refused, "HTTP/1.1 403", true)] {
        let mut stream = TcpStream::connect(addr(&proxy)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        let head = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
        assert!(head.starts_with(&status.to_ascii_lowercase()), "{head}");
        assert_eq!(head.contains("connection: close"), closes, "{head}");
    }
}
