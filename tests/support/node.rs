//! `sitewatch serve` as a child process on a database URL, its first line
//! read for the address; killed when dropped. Shared by the test crates that
//! run nodes on PostgreSQL through `#[path]`.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Child, Command, Stdio};

pub struct Node {
    child: Child,
    pub base: String,
}

impl Node {
    /// Starts a node with `--db url` and any further arguments.
    pub fn start(bin: &str, url: &str, more: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(bin)
            .args(["serve", "--bind", "127.0.0.1:0", "--db", url])
            .args(more)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sitewatch serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "first line {line:?}");
        Self { child, base }
    }

    /// GET, with its status and JSON body (null if none).
    pub fn ask(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::blocking::get(format!("{}{path}", self.base)).unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    /// GET that must answer 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.ask(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A JSON request with a GeoJSON body.
    pub fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        self.send_with(method, path, body, &[])
    }

    /// As [`Node::send`], with more headers.
    pub fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/geo+json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    /// Kills the process at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
