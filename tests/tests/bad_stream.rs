//! A malformed or oversized message closes that one stream, with a clear log
//! line, and touches no other agent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use bytes::{Buf, BufMut};
use nodewarden_proto::v1::{GetNodeRequest, ListNodesRequest};
use nodewarden_tests::{
    Collector, admin, agent_tls, eventually, free_port, start_agent, tls_channel,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends raw bytes as gRPC messages, whatever they are.
#[derive(Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Opens an AgentLink session and sends `messages` as they are; returns the
/// status the collector ended the stream with.
async fn send_raw(dir: &std::path::Path, url: &str, messages: Vec<Vec<u8>>) -> tonic::Status {
    // A joined node's certificate: without one the stream is refused before
    // any message is read.
    let channel = tls_channel(url, agent_tls(dir, "good")).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/nodewarden.v1.AgentLink/Session");
    let outbound = tokio_stream::iter(messages);
    match grpc
        .streaming(tonic::Request::new(outbound), path, RawCodec)
        .await
    {
        Err(status) => status,
        Ok(response) => {
            let mut inbound = response.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return tonic::Status::ok("closed"),
                    Err(status) => return status,
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_close_only_their_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let _agent = start_agent(dir.path(), "good", &collector.url(), "1s", &[]);
    let seq_of_good = || async {
        let mut a = admin(&collector.socket()).await.ok()?;
        a.get_node(GetNodeRequest {
            name: "good".into(),
        })
        .await
        .ok()?
        .into_inner()
        .latest
        .map(|s| s.seq)
    };
    let before = eventually(
        Duration::from_secs(20),
        "the good agent streaming",
        || async { seq_of_good().await.filter(|s| *s >= 2) },
    )
    .await;

    // Not protobuf at all.
    let garbage = send_raw(dir.path(), &collector.url(), vec![vec![0xff; 64]]).await;
    assert_ne!(
        garbage.code(),
        tonic::Code::Ok,
        "garbage must be refused: {garbage:?}"
    );
    // A Hello whose node_name field claims 5 MB (field 1 of AgentMessage, a
    // length-delimited Hello) — over the 4 MiB limit.
    let mut huge = vec![0x0a];
    let len: usize = 5 * 1024 * 1024;
    let mut l = len;
    while l >= 0x80 {
        huge.push((l as u8 & 0x7f) | 0x80);
        l >>= 7;
    }
    huge.push(l as u8);
    huge.extend(std::iter::repeat_n(0u8, len));
    let oversized = send_raw(dir.path(), &collector.url(), vec![huge]).await;
    assert_eq!(
        oversized.code(),
        tonic::Code::OutOfRange,
        "oversized: {oversized:?}"
    );

    // The good agent never noticed.
    eventually(
        Duration::from_secs(10),
        "the good agent still streaming",
        || async { seq_of_good().await.filter(|s| *s >= before + 3) },
    )
    .await;
    let mut a = admin(&collector.socket()).await.unwrap();
    let nodes = a
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    assert!(nodes[0].online);
    collector.proc.stop();
    let log = collector.proc.log_text();
    assert!(
        log.contains("closing stream"),
        "a clear log line is expected:\n{log}"
    );
}
