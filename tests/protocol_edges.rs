//! Message sequences that real drivers send and that must reach the client in exactly the order
//! PostgreSQL produces: Flush without Sync (pgx, JDBC), pipelines that continue after an error
//! (libpq pipeline mode), several Syncs in flight, and a backend held only until the batch ends.

mod support;

use bytes::BytesMut;
use support::probe::frontend as fe;
use support::probe::RawClient;
use support::*;

async fn raw_client(pool_size: u32) -> (pgferry::ProxyHandle, RawClient) {
    let mut config = proxy_config(pg());
    config.auth.allow_md5 = true;
    config.databases[0].pool_size = pool_size;
    let handle = start_proxy(config).await;
    let client = RawClient::login(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB).await;
    (handle, client)
}

#[tokio::test]
async fn flush_without_sync_delivers_replies_and_keeps_the_backend() {
    let (handle, mut client) = raw_client(1).await;
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, "", "SELECT 1");
    fe::bind(&mut buf, "");
    fe::execute(&mut buf);
    fe::flush(&mut buf);
    client.send(&buf).await;
    assert_eq!(client.read_tags(4).await, b"12DC".to_vec());
    // The batch is still open: the only backend must stay with this client.
    let other = connect(handle.client_addr(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { other.simple_query("SELECT 2").await.map(|_| ()) });
    let series = "pgferry_pool_waiting_clients{database=\"appdb\",user=\"app\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while support::probe::metric(&handle.metrics().encode(), series) < 1.0 {
        assert!(
            !waiting.is_finished(),
            "the other client got the backend while a batch was open"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the other client never queued"
        );
        tokio::task::yield_now().await;
    }
    buf.clear();
    fe::sync(&mut buf);
    client.send(&buf).await;
    assert_eq!(client.read_until_ready().await, b"Z".to_vec());
    waiting
        .await
        .unwrap()
        .expect("backend released after the Sync");
}

#[tokio::test]
async fn pipeline_continues_after_an_error_at_the_next_sync() {
    let (_handle, mut client) = raw_client(2).await;
    let mut buf = BytesMut::new();
    fe::parse(&mut buf, "", "SELECT * FROM no_such_table_here");
    fe::bind(&mut buf, "");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    fe::parse(&mut buf, "", "SELECT 2");
    fe::bind(&mut buf, "");
    fe::execute(&mut buf);
    fe::sync(&mut buf);
    fe::query(&mut buf, "SELECT 3; SELECT 4");
    client.send(&buf).await;
    assert_eq!(client.read_until_ready().await, b"EZ".to_vec());
    assert_eq!(client.read_until_ready().await, b"12DCZ".to_vec());
    assert_eq!(client.read_until_ready().await, b"TDCTDCZ".to_vec());
}

#[tokio::test]
async fn named_statements_inside_one_transaction_work_in_transaction_mode() {
    let (_handle, mut client) = raw_client(2).await;
    let mut buf = BytesMut::new();
    fe::query(&mut buf, "BEGIN");
    client.send(&buf).await;
    assert_eq!(client.read_until_ready().await, b"CZ".to_vec());
    buf.clear();
    fe::parse(&mut buf, "s1", "SELECT 42");
    fe::describe_statement(&mut buf, "s1");
    fe::sync(&mut buf);
    fe::bind(&mut buf, "s1");
    fe::execute(&mut buf);
    fe::close_statement(&mut buf, "s1");
    fe::sync(&mut buf);
    client.send(&buf).await;
    assert_eq!(client.read_until_ready().await, b"1tTZ".to_vec());
    assert_eq!(client.read_until_ready().await, b"2DC3Z".to_vec());
    buf.clear();
    fe::query(&mut buf, "COMMIT");
    client.send(&buf).await;
    assert_eq!(client.read_until_ready().await, b"CZ".to_vec());
}

/// libpq pipeline mode: many queries written while results are read concurrently. (The proxy
/// also drains backend output while a write to the backend is blocked; this test could not
/// make the earlier blocking version hang, so it guards ordering and completeness only.)
#[tokio::test]
async fn a_large_pipeline_read_concurrently_completes_in_order() {
    let (_handle, client) = raw_client(1).await;
    let (mut reader, mut writer) = client.stream.into_split();
    // Small queries with large results, so the backend often blocks sending results.
    const QUERIES: usize = 30_000;
    let query = "SELECT repeat('x', 5000)";
    let writer = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        for _ in 0..QUERIES {
            fe::query(&mut buf, query);
        }
        tokio::io::AsyncWriteExt::write_all(&mut writer, &buf)
            .await
            .expect("pipeline written");
        writer
    });
    let reading = async {
        let mut ready = 0;
        while ready < QUERIES {
            let (tag, _) = support::probe::read_message(&mut reader)
                .await
                .expect("reply");
            ready += usize::from(tag == b'Z');
        }
        ready
    };
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), reading).await;
    assert_eq!(done.expect("pipeline stalled in the proxy"), QUERIES);
    writer.await.unwrap();
}
