//! A moto server on 127.0.0.1, shared by the tests of this binary. A shell watchdog stops it
//! when the test process exits (statics are never dropped), so no server outlives the run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use serde_json::Value;

use super::python;

pub struct Moto {
    pub endpoint: String,
    /// JSON lines of every redshift-data statement (see `moto_launcher.py`).
    pub redshift_log: std::path::PathBuf,
}

static SERVER: OnceLock<Moto> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared server, started on first use.
pub fn server() -> &'static Moto {
    SERVER.get_or_init(|| {
        let check = Command::new(python()).args(["-c", "import moto.server, flask"]).output();
        if !check.map(|o| o.status.success()).unwrap_or(false) {
            panic!("moto is not installed for {}: run `make test` (it installs it) or `pip install 'moto[server]'`", python());
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("moto-{port}.log"));
        let redshift_log = std::env::temp_dir().join(format!("moto-{port}-redshift.jsonl"));
        // moto's redshift-data needs small fixes for the Rust SDK; the launcher applies them.
        let script = r#"
            "$PY" "$LAUNCHER" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
            moto=$!
            trap 'kill $moto 2>/dev/null' EXIT INT TERM
            while kill -0 "$OWNER" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 0.5; done
        "#;
        // Not waited on by design: the watchdog outlives this call and exits with the test process.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", script])
            .env("PY", python())
            .env("PORT", port.to_string())
            .env("LAUNCHER", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/moto_launcher.py"))
            .env("MOTO_REDSHIFT_LOG", &redshift_log)
            .env("LOG", &log)
            .env("OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto watchdog");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start; see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            redshift_log,
        }
    })
}

impl Moto {
    /// SDK configuration pointed at this server, with dummy credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                Credentials::new("testing", "testing", None, None, "moto"),
            ))
            .build()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        shoplake::aws::s3_client(&self.sdk_config())
    }

    /// A fresh bucket.
    pub async fn bucket(&self, name: &str) -> aws_sdk_s3::Client {
        let s3 = self.s3();
        s3.create_bucket().bucket(name).send().await.unwrap();
        s3
    }
}

/// An SNS client of the shared server and a new topic named `name` (its ARN).
pub async fn topic(name: &str) -> (aws_sdk_sns::Client, String) {
    let sns = shoplake::aws::sns_client(&server().sdk_config());
    let arn = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    (sns, arn)
}

/// moto's dump of every model it holds (`/moto-api/data.json`). moto builds it from live objects
/// while the other tests keep writing to the same server, so a dump can fail with a 500 (an empty
/// bucket that passed its serialisability check gains an object before the final encode); a
/// failed dump says nothing about this test, so it is asked again.
pub fn data() -> Value {
    let endpoint = server().endpoint.trim_start_matches("http://").to_owned();
    let mut last = String::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&endpoint).unwrap();
        write!(
            stream,
            "GET /moto-api/data.json HTTP/1.0\r\nHost: {endpoint}\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if head.split_whitespace().nth(1) == Some("200") {
            return serde_json::from_str(body).expect("moto's data.json is JSON");
        }
        last = head.lines().next().unwrap_or_default().to_owned();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "moto's /moto-api/data.json failed 20 times (last: {last}); see moto's log in the temp dir"
    )
}

/// What moto recorded as published to `topic`: (subject, message, attributes).
pub fn published(topic: &str) -> Vec<(String, String, Value)> {
    let data = data();
    data["sns"]["Topic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["arn"] == topic)
        .flat_map(|t| {
            t["sent_notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|n| {
            (
                n[2].as_str().unwrap_or_default().to_owned(),
                n[1].as_str().unwrap_or_default().to_owned(),
                n[3].clone(),
            )
        })
        .collect()
}
