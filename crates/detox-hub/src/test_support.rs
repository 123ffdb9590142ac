//! Test helpers: a loopback HTTP server and an in-memory wheel.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// What the server answers for a path.
pub(crate) struct Reply {
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    /// A 200 with this body.
    pub(crate) fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            content_type,
            body: body.into(),
        }
    }
}

/// A real HTTP/1.1 server on loopback that serves fixed paths (404 for the rest), one
/// connection at a time, each closed after its answer. Returns `http://127.0.0.1:PORT`.
pub(crate) fn serve(files: Vec<(String, Reply)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut l = String::new();
                match reader.read_line(&mut l) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if l == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let _ = match files.iter().find(|(p, _)| *p == path) {
                Some((_, r)) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            r.content_type,
                            r.body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&r.body)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    format!("http://{addr}")
}

/// A zip archive (a wheel) holding these entries.
pub(crate) fn wheel(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for (name, body) in entries {
        z.start_file(*name, o).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}
