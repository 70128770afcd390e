//! Test helpers: start a server on `127.0.0.1:0` with millisecond latencies, and send
//! raw HTTP requests that expose status, headers and body.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mockpredict_core::{MockModel, Model, QueueConfig, ShutdownReport};
use mockpredict_server::{App, ServerConfig, serve};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and the means to stop it.
pub struct TestServer<M: Model = MockModel> {
    pub addr: SocketAddr,
    pub app: App<M>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<mockpredict_server::Result<ShutdownReport>>>,
}

impl<M: Model> TestServer<M> {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .take()
            .expect("not yet shut down")
            .await
            .expect("serve task panicked")
            .expect("serve failed")
    }

    /// Triggers graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A mock whose predictions take `latency` (e.g. "20ms").
pub fn mock(latency: &str) -> MockModel {
    MockModel::new().with_latency(latency.parse().expect("valid latency"))
}

/// Starts `model` with the given configs on a free loopback port.
pub async fn start_with<M>(model: M, queue: QueueConfig, config: ServerConfig) -> TestServer<M>
where
    M: Model,
    M::Input: Serialize + DeserializeOwned,
    M::Output: Serialize,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = App::new(model, queue, config).expect("app");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app.clone(), async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        app,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The mock at 20 ms with default configs.
pub async fn start() -> TestServer {
    start_with(
        mock("20ms"),
        QueueConfig::default(),
        ServerConfig::default(),
    )
    .await
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the JSON error shape and returns its `error_type`.
    pub fn error_type(&self) -> String {
        let body = self.json();
        assert!(body["error"].is_string(), "no error message: {body}");
        body["error_type"]
            .as_str()
            .unwrap_or_else(|| panic!("no error_type: {body}"))
            .to_owned()
    }
}

/// A plain HTTP/1.1 client.
pub fn http() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends one request with optional headers and body.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        http().request(req.body(body).expect("request")),
    )
    .await
    .expect("answered within 10 s")
    .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Resp {
    send(Method::GET, url, &[], None).await
}

pub async fn post_json(url: &str, body: &str) -> Resp {
    send(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        Some(body),
    )
    .await
}

/// Submits `{"input": INPUT}` to the predict route at `url` (async, the default) and
/// returns the prediction ID from the 202 body.
pub async fn submit_id(url: &str, input: &str) -> String {
    let body = serde_json::json!({ "input": input }).to_string();
    post_json(url, &body).await.json()["prediction_id"]
        .as_str()
        .expect("a 202 body with a prediction_id")
        .to_owned()
}
