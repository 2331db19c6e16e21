//! Deadlines and the change log over HTTP: a request still working when its
//! time is up is answered 503 and leaves nothing behind, SIGTERM is not held
//! up by one, and every committed write is in the log in commit order.

use crate::helpers::Server;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Opens a connection and sends a site edit whose body is promised in full but
/// only begun: the request is in flight until the server ends it.
fn stalled_edit(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "PUT /api/collections/sites/items/yongbyon HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/geo+json\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(br#"{"type":"Feature","#).unwrap();
    stream.flush().unwrap();
    stream
}

/// Everything the server sends until it closes the connection or stops
/// sending; the cap only keeps a broken server from hanging the test.
fn read_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                // A complete problem document ends the answer; the connection
                // may stay open for the body the client never sent.
                if let Some((_, body)) = text.split_once("\r\n\r\n")
                    && serde_json::from_str::<Value>(body).is_ok()
                {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn a_request_still_working_at_its_deadline_is_answered_503_and_stores_nothing() {
    let s = Server::start_with(&["--request-timeout", "0.5"]);
    let revisions = |s: &Server| {
        s.geojson("/api/sites/yongbyon/history?limit=10000")["features"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = revisions(&s);
    let started = Instant::now();
    let mut stream = stalled_edit(&s.base);
    let answer = read_answer(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "expected 503, got {answer:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["status"], 503);
    assert!(
        body["detail"].as_str().unwrap().contains("500 ms"),
        "{body}"
    );
    // The server goes on serving, and the stalled edit left nothing.
    assert_eq!(revisions(&s), before);
    assert_eq!(s.get("/healthz").status(), 200);
}

#[test]
fn an_observation_batch_may_take_longer_than_a_read() {
    let s = Server::start_with(&["--request-timeout", "0.5"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let body = json!({"type": "FeatureCollection", "features": [{"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [125.75, 39.8]},
        "properties": {"observed_at": "2025-03-01T00:00:00Z", "sensor": "t", "finding": "vehicle_activity"}}]})
    .to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /api/observations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/geo+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).unwrap();
    stream.flush().unwrap();
    // Held back past the reads' deadline: a batch has an hour.
    std::thread::sleep(Duration::from_millis(1500));
    stream.write_all(rest.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer:?}");
}

#[test]
fn sigterm_is_not_held_up_by_a_request_that_would_never_finish() {
    let mut s = Server::start_with(&["--request-timeout", "1"]);
    let mut stream = stalled_edit(&s.base);
    // The server has the request once it answers another on a new connection
    // after it: connections are accepted in order.
    assert_eq!(s.get("/healthz").status(), 200);
    let status = s
        .terminate(Duration::from_secs(60))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}");
    let answer = read_answer(&mut stream);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer:?}"
    );
}

#[test]
fn a_request_timeout_must_be_a_positive_number_of_seconds() {
    for bad in ["0", "-1", "abc", "nan"] {
        let out = std::process::Command::new(crate::helpers::BIN)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                &format!("--request-timeout={bad}"),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--request-timeout"), "{err}");
    }
}

fn write(s: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
    let mut req = reqwest::blocking::Client::new().request(method, format!("{}{path}", s.base));
    req = match body {
        Some(b) => req
            .header("Content-Type", "application/geo+json")
            .body(b.to_string()),
        None => req.header("Content-Type", "application/json").body("{}"),
    };
    req.send().expect("request").status().as_u16()
}

fn site(name: &str, lon: f64) -> Value {
    json!({"type": "Feature", "id": "log-test",
        "geometry": {"type": "Polygon", "coordinates": [[[lon, 10.0], [lon + 0.1, 10.0], [lon + 0.1, 10.1], [lon, 10.0]]]},
        "properties": {"name": name, "country": "ZZZ", "kind": "research"}})
}

fn log(s: &Server, query: &str) -> Value {
    s.get_json(&format!("/api/changes/log?{query}"), "application/json")
}

#[test]
fn every_committed_write_is_in_the_change_log_in_commit_order() {
    let s = Server::start();
    let head = log(&s, "after=0&limit=1")["head"].as_i64().unwrap();
    assert!(head > 0, "the seed is in the log");
    let items = "/api/collections/sites/items";
    assert_eq!(
        write(&s, reqwest::Method::POST, items, Some(site("A", 20.0))),
        201
    );
    assert_eq!(
        write(
            &s,
            reqwest::Method::PUT,
            &format!("{items}/log-test"),
            Some(site("B", 30.0))
        ),
        200
    );
    assert_eq!(
        write(
            &s,
            reqwest::Method::DELETE,
            &format!("{items}/log-test"),
            None
        ),
        204
    );
    let batch = json!({"type": "FeatureCollection", "features": [{"type": "Feature",
        "geometry": {"type": "Point", "coordinates": [125.75, 39.8]},
        "properties": {"observed_at": "2025-03-01T00:00:00Z", "sensor": "t", "finding": "vehicle_activity"}}]});
    assert_eq!(
        write(&s, reqwest::Method::POST, "/api/observations", Some(batch)),
        201
    );

    let page = log(&s, &format!("after={head}"));
    let entries = page["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "site_created",
            "site_updated",
            "site_retired",
            "batch_stored"
        ]
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > head);
    assert_eq!(entries[0]["site_id"], "log-test");
    assert_eq!(entries[0]["revision"], 1);
    assert_eq!(entries[1]["revision"], 2);
    // Each site entry carries the box of the footprint it wrote; a retirement
    // keeps the last one.
    assert_eq!(entries[0]["bbox"], json!([20.0, 10.0, 20.1, 10.1]));
    assert_eq!(entries[1]["bbox"], json!([30.0, 10.0, 30.1, 10.1]));
    assert_eq!(entries[2]["bbox"], entries[1]["bbox"]);
    assert_eq!(entries[3]["bbox"], json!([125.75, 39.8, 125.75, 39.8]));
    assert_eq!(page["head"], seqs[3]);
    assert_eq!(page["last"], seqs[3]);

    // Followed a page at a time, the log gives the same entries.
    let mut after = head;
    let mut followed = Vec::new();
    loop {
        let page = log(&s, &format!("after={after}&limit=1"));
        let got = page["entries"].as_array().unwrap().clone();
        if got.is_empty() {
            assert!(page["links"].as_array().unwrap().is_empty());
            break;
        }
        after = page["last"].as_i64().unwrap();
        followed.extend(got);
    }
    assert_eq!(&followed, entries);
    for bad in ["after=-1", "after=x", "after=1.5"] {
        let resp = s.get(&format!("/api/changes/log?{bad}"));
        assert_eq!(resp.status(), 400, "{bad}");
        let problem: Value = resp.json().unwrap();
        assert_eq!(problem["parameter"], "after", "{bad}");
    }
}
