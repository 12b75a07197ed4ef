//! The trace reader and writer: every type of line, every malformed line named by its
//! number and problem, the bounds, and what the writer writes reading back.

use backstop_sim_check::trace::{
    Event, IdSet, MAX_LINE_BYTES, Request, TraceError, TraceReader, TraceWriter,
};

fn all(text: &str) -> Result<Vec<Event>, TraceError> {
    let mut r = TraceReader::new(text.as_bytes());
    let mut v = Vec::new();
    while let Some(e) = r.next_event()? {
        v.push(e);
    }
    Ok(v)
}

fn err_line(text: &str) -> (u64, String) {
    match all(text) {
        Err(TraceError::Malformed { line, reason }) => (line, reason),
        other => panic!("expected a malformed-line error, got {other:?}"),
    }
}

const OK1: &str = r#"{"t_us":0,"type":"request","id":1,"key":"client-7","job_us":90000000,"files":12,"bytes":52428800}"#;

#[test]
fn parses_all_types_and_ignores_unknown_fields() {
    let text = format!(
        "{OK1}\n{{\"t_us\":1,\"type\":\"memory\",\"available_bytes\":5,\"extra\":[1,2]}}\r\n\r\n   \n{{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":7}}"
    );
    let v = all(&text).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[0],
        Event::Request(Request {
            t_us: 0,
            id: 1,
            key: Some(0),
            job_us: 90_000_000,
            files: 12,
            bytes: 52_428_800
        })
    );
    assert_eq!(
        v[1],
        Event::Memory {
            t_us: 1,
            available_bytes: 5
        }
    );
    assert_eq!(
        v[2],
        Event::Disk {
            t_us: 1,
            used_bytes: 7
        }
    );
}

#[test]
fn malformed_lines_name_their_line_and_problem() {
    let cases: &[(&str, &str)] = &[
        (r#"{"t_us":1,"type":"bogus"}"#, "unknown `type`"),
        (
            r#"{"t_us":1,"type":"request","id":1,"job_us":1}"#,
            "duplicate request `id` 1",
        ),
        (
            r#"{"t_us":-1,"type":"disk","used_bytes":1}"#,
            "integer `-1`",
        ),
        (
            r#"{"t_us":1.5,"type":"disk","used_bytes":1}"#,
            "floating point",
        ),
        (
            r#"{"t_us":3155760000000001,"type":"disk","used_bytes":1}"#,
            "beyond 100 years",
        ),
        (
            r#"{"t_us":1,"type":"request","id":2,"job_us":3155760000000001}"#,
            "`job_us`",
        ),
        (
            r#"{"t_us":1,"type":"request","id":2}"#,
            "missing field `job_us`",
        ),
        (r#"{"type":"disk","used_bytes":1}"#, "missing field `t_us`"),
        (
            r#"{"t_us":1,"type":"memory"}"#,
            "missing field `available_bytes`",
        ),
        (
            r#"{"t_us":1,"type":"disk","used_bytes":"9"}"#,
            "invalid type",
        ),
        (r#"not json"#, "column 2: expected ident"),
        (
            r#"{"t_us":1,"type":"request","id":2,"job_us":1,"files":5000}"#,
            "`files`",
        ),
        (
            r#"{"t_us":1,"type":"disk","used_bytes":18446744073709551616}"#,
            "column",
        ),
    ];
    for (bad, needle) in cases {
        let text = format!("{OK1}\n\n{bad}\n{OK1}\n");
        let (line, reason) = err_line(&text);
        assert_eq!(line, 3, "{bad}");
        assert!(reason.contains(needle), "{bad}: {reason}");
    }
}

#[test]
fn decreasing_time_is_malformed() {
    let text = "{\"t_us\":5,\"type\":\"disk\",\"used_bytes\":1}\n{\"t_us\":4,\"type\":\"disk\",\"used_bytes\":1}\n";
    let (line, reason) = err_line(text);
    assert_eq!(line, 2);
    assert!(reason.contains("before the previous"), "{reason}");
}

#[test]
fn overlong_and_non_utf8_lines_are_malformed() {
    let long = format!(
        "{{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":1,\"pad\":\"{}\"}}\n",
        "x".repeat(MAX_LINE_BYTES)
    );
    assert!(err_line(&long).1.contains("longer than"));
    let mut bytes = b"{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":1}\n".to_vec();
    bytes.extend_from_slice(b"\xff\xfe\n");
    let mut r = TraceReader::new(&bytes[..]);
    r.next_event().unwrap();
    let e = r.next_event().unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains("UTF-8"));
}

#[test]
fn writer_output_reads_back() {
    let events = vec![
        Event::Request(Request {
            t_us: 3,
            id: 9,
            key: Some(2),
            job_us: 4,
            files: 1,
            bytes: 5,
        }),
        Event::Memory {
            t_us: 4,
            available_bytes: 6,
        },
        Event::Disk {
            t_us: 4,
            used_bytes: 8,
        },
        Event::Request(Request {
            t_us: 5,
            id: 10,
            key: None,
            job_us: 4,
            files: 0,
            bytes: 0,
        }),
    ];
    let mut w = TraceWriter::new(Vec::new());
    for e in &events {
        w.write(e, |k| format!("client-\"{k}\"")).unwrap();
    }
    let text = String::from_utf8(w.finish().unwrap()).unwrap();
    let mut r = TraceReader::new(text.as_bytes());
    let mut back = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        back.push(e);
    }
    // Keys are re-interned from 0 on reading.
    let mut expected = events.clone();
    if let Event::Request(r) = &mut expected[0] {
        r.key = Some(0);
    }
    assert_eq!(back, expected);
    assert_eq!(r.keys().name(0), Some("client-\"2\""));
}

#[test]
fn id_set_detects_duplicates_dense_and_sparse() {
    let mut s = IdSet::new();
    assert!(s.insert(0));
    assert!(s.insert(1 << 40));
    assert!(s.insert(12345));
    assert!(!s.insert(0));
    assert!(!s.insert(1 << 40));
    assert!(!s.insert(12345));
}
