//! Bad input to the NUT server: garbage and binary lines, a 1 MB line, more
//! idle connections than it holds, a client sending a byte a second, INSTCMD
//! before LOGIN, a thousand wrong passwords, STARTTLS twice, an unknown UPS.
//! Each gets upsd's error or a closed connection, and meanwhile the agent's
//! stream is not delayed: mains lost still reaches the collector within a
//! poll. Needs tests/setup/install-test-tools.sh (group nutclients).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod nut_server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nodewarden_proto::v1::ListUpsRequest;
use nodewarden_tests::{Collector, admin, eventually};
use nut_server_support::{ADMIN, Rig, run};

async fn on_battery(c: &Collector) -> bool {
    let Ok(mut a) = admin(&c.socket()).await else {
        return false;
    };
    let Ok(list) = a
        .list_ups(ListUpsRequest {
            name: String::new(),
        })
        .await
    else {
        return false;
    };
    list.into_inner()
        .ups
        .first()
        .and_then(|u| u.status.as_ref())
        .is_some_and(|s| s.status.iter().any(|t| t == "OB"))
}

/// True when the server closed `s` (EOF or reset) within `within`.
fn closed(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// How long a client waits for a free slot after the flood: the rig's
/// idle_timeout (3 s) sheds the idle connections, with a margin.
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// A client from `source` as soon as the server has a slot for it. The idle
/// flood may hold every slot until idle_timeout, and a slot is freed only
/// once the server has read the last client's end; on a loaded machine both
/// come later. A client refused for want of a slot is closed before any
/// reply; a blocked address would get ERR ACCESS-DENIED at LOGIN, so waiting
/// here hides no block.
async fn connect_from_when_a_slot_frees(source: [u8; 4], port: u16) -> nut_server_support::NutLine {
    let deadline = Instant::now() + SLOT_WAIT;
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let mut client = nut_server_support::NutLine::from_std(tcp.into_std().unwrap());
        if client.say("NETVER") == "1.3" {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "no free slot for {source:?} within {SLOT_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_get_errors_or_closed_and_the_agent_stream_keeps_its_pace() {
    let rig =
        Rig::start("max_clients = 40\nidle_timeout = \"3s\"\nauth_failures_per_minute = 10").await;
    let port = rig.nut_port;

    // The simple ones, on one connection that stays usable.
    let mut c = rig.connect();
    c.stream.write_all(b"\x00\xff\xfe\x01garbage\n").unwrap();
    assert_eq!(c.read(), "ERR INVALID-ARGUMENT");
    assert_eq!(c.say("FROB NICATE"), "ERR UNKNOWN-COMMAND");
    assert_eq!(
        c.say("INSTCMD rack test.battery.start.quick"),
        "ERR USERNAME-REQUIRED"
    );
    assert_eq!(c.say("GET VAR nosuch ups.status"), "ERR UNKNOWN-UPS");
    assert_eq!(c.say("LIST VAR nosuch"), "ERR UNKNOWN-UPS");
    assert_eq!(c.say("NETVER"), "1.3");
    drop(c);

    // The flood runs on threads while mains is cut.
    let flood = std::thread::spawn(move || {
        let addr = ("127.0.0.1", port);
        // A 1 MB line: closed, not buffered.
        let mut big = TcpStream::connect(addr).unwrap();
        let _ = big.write_all(&vec![b'A'; 1 << 20]);
        let big_closed = closed(&mut big, Duration::from_secs(5));
        // A thousand wrong passwords on one connection.
        let mut guesser = TcpStream::connect(addr).unwrap();
        guesser
            .write_all(b"USERNAME admin\nPASSWORD wrong-guess\n")
            .unwrap();
        let mut script = Vec::new();
        for _ in 0..1000 {
            script.extend_from_slice(b"LOGIN rack\n");
        }
        guesser.write_all(&script).unwrap();
        let mut replies = String::new();
        guesser
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let want = "OK\nOK\n".len() + 1000 * "ERR ACCESS-DENIED\n".len();
        let mut buf = [0u8; 4096];
        while replies.len() < want {
            match guesser.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => replies.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        // More idle connections than the server holds.
        let mut idle: Vec<TcpStream> = (0..100)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        let refused = idle
            .iter_mut()
            .map(|s| closed(s, Duration::from_millis(50)))
            .filter(|c| *c)
            .count();
        (big_closed, replies, refused, idle)
    });

    rig.sim.set(|s| s.mains = false);
    let cut = Instant::now();
    eventually(
        Duration::from_secs(5),
        "OB at the collector during the flood",
        || async { on_battery(&rig.collector).await.then_some(()) },
    )
    .await;
    let latency = cut.elapsed();
    let (big_closed, replies, refused, mut idle) = flood.join().unwrap();
    assert!(
        latency < Duration::from_millis(1500),
        "mains lost took {latency:?} to reach the collector during the flood (1 s poll)"
    );
    assert!(big_closed, "a 1 MB line closes the connection");
    let denied = replies
        .lines()
        .filter(|l| *l == "ERR ACCESS-DENIED")
        .count();
    assert_eq!(
        denied,
        1000,
        "every guess answered: {}",
        &replies[..replies.len().min(200)]
    );
    assert!(
        refused >= 55,
        "only {refused} of 100 idle connections were refused at 40 held"
    );

    // This address is now refused unchecked, even with the right password;
    // another address is not. Both need a slot first: the idle flood may
    // hold them all until idle_timeout sheds it (3 s). upscmd closed before
    // any reply, for want of a slot, dies of SIGPIPE with nothing to say.
    let slot_deadline = Instant::now() + SLOT_WAIT;
    let out = loop {
        let (_, out) = run(
            "upscmd",
            &[
                "-u",
                ADMIN.0,
                "-p",
                ADMIN.1,
                &rig.ups("rack"),
                "beeper.toggle",
            ],
        );
        if !out.is_empty() || Instant::now() > slot_deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(out.contains("ERR ACCESS-DENIED"), "blocked address: {out}");
    let mut other = connect_from_when_a_slot_frees([127, 0, 0, 2], port).await;
    assert_eq!(other.say(&format!("USERNAME {}", ADMIN.0)), "OK");
    assert_eq!(other.say(&format!("PASSWORD {}", ADMIN.1)), "OK");
    assert_eq!(
        other.say("LOGIN rack"),
        "OK",
        "another address is not slowed or blocked"
    );

    // Idle connections are shed after idle_timeout, and the slots free up.
    for s in idle.iter_mut().take(5) {
        assert!(
            closed(s, Duration::from_secs(6)),
            "an idle client is dropped"
        );
    }
    // A byte a second never completes a line within idle_timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let mut was_closed = false;
    for b in b"GET VAR rack ups.status\n" {
        if slow.write_all(&[*b]).is_err() || closed(&mut slow, Duration::from_secs(1)) {
            was_closed = true;
            break;
        }
    }
    assert!(
        was_closed,
        "a client sending a byte a second was never closed"
    );
    assert!(started.elapsed() < Duration::from_secs(6));

    let log = std::fs::read_dir(rig.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("collector-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("wrong passwords from this address"),
        "the block is logged"
    );
    assert!(
        !log.contains("wrong-guess") && !log.contains(ADMIN.1),
        "passwords are never logged"
    );
}

const STARTTLS: &str = r#"
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
s.sendall(b"STARTTLS\n"); print(f.readline().decode().strip())
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
g = t.makefile("rb")
t.sendall(b"STARTTLS\n"); print(g.readline().decode().strip())
t.sendall(b"GET VAR rack ups.status\n"); print(g.readline().decode().strip())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_uses_the_collectors_certificate_and_only_once() {
    let rig = Rig::start("").await;
    let ca = Collector::pki_dir(rig.dir.path()).join("ca.pem");
    let (ok, out) = run(
        "/usr/bin/python3",
        &[
            "-c",
            STARTTLS,
            &rig.nut_port.to_string(),
            &ca.display().to_string(),
        ],
    );
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "OK STARTTLS",
            "ERR ALREADY-SSL-MODE",
            "VAR rack ups.status \"OL\""
        ]
    );
}
