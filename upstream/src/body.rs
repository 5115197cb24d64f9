//! Bodies read with a cap. A server may answer with more than any real answer holds (a
//! 150 MB page, a body that never ends); reading stops at the cap, so memory stays bounded
//! and the answer is refused as [`BodyError::TooLarge`], its own kind of failure, instead
//! of looking like a broken connection.

use futures::{Stream, StreamExt};

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError<E> {
    /// The body is over the cap: its declared length says so, or reading passed the cap.
    #[error("{}", too_large_text(*.limit, *.declared))]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
        /// The length the server declared (Content-Length), when it declared one over the
        /// cap; `None` when reading passed the cap.
        declared: Option<u64>,
    },
    /// Reading failed (reset, timeout) before the body ended.
    #[error(transparent)]
    Read(E),
}

impl<E> BodyError<E> {
    /// The short machine-readable name of an over-size answer, the same for every upstream.
    pub const TOO_LARGE: &'static str = "too_large";
}

fn too_large_text(limit: u64, declared: Option<u64>) -> String {
    match declared {
        Some(d) => format!(
            "answer of {} is over the {} limit",
            human_bytes(d),
            human_bytes(limit)
        ),
        None => format!(
            "answer is over the {} limit (stopped reading there)",
            human_bytes(limit)
        ),
    }
}

/// Reads `chunks` (a response's body stream, with `declared` its Content-Length) into
/// memory, refusing it as soon as it is known to be over `limit` bytes: before reading
/// when it declares more, else when the bytes read pass the cap. At most `limit` bytes
/// are held.
pub async fn read_capped<S, B, E>(
    declared: Option<u64>,
    chunks: S,
    limit: u64,
) -> Result<Vec<u8>, BodyError<E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    if let Some(d) = declared.filter(|d| *d > limit) {
        return Err(BodyError::TooLarge {
            limit,
            declared: Some(d),
        });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    // A declared length is trusted for the allocation only up to the cap.
    let mut body = Vec::with_capacity(declared.map_or(0, |d| usize::try_from(d).unwrap_or(0)));
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let chunk = chunk.as_ref();
        if chunk.len() > cap.saturating_sub(body.len()) {
            return Err(BodyError::TooLarge {
                limit,
                declared: None,
            });
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

/// A byte count for people: `512 bytes`, `64 KiB`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if (value - value.round()).abs() < 0.05 {
        format!("{} {}", value.round() as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    type Chunk = Result<Vec<u8>, std::io::Error>;

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Chunk> {
        stream::iter(sizes.iter().map(|n| Ok(vec![b'x'; *n])).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_body_at_the_cap_is_read_and_one_byte_more_is_refused() {
        let got = read_capped(None, chunks(&[600, 424]), 1024).await;
        assert_eq!(got.map(|b| b.len()).ok(), Some(1024));
        let got = read_capped(None, chunks(&[600, 425]), 1024).await;
        assert!(matches!(
            got,
            Err(BodyError::TooLarge {
                limit: 1024,
                declared: None
            })
        ));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let never = stream::iter(std::iter::repeat_with(|| -> Chunk { Ok(vec![0; 1 << 20]) }));
        let got = read_capped(Some(500 << 20), never, 16 << 20).await;
        let Err(e) = got else { panic!("accepted") };
        assert_eq!(e.to_string(), "answer of 500 MiB is over the 16 MiB limit");
    }

    #[tokio::test]
    async fn a_body_that_never_ends_stops_at_the_cap() {
        let never = stream::iter(std::iter::repeat_with(|| -> Chunk { Ok(vec![0; 4096]) }));
        let got = read_capped(None, never, 1 << 20).await;
        let Err(e) = got else { panic!("accepted") };
        assert_eq!(
            e.to_string(),
            "answer is over the 1 MiB limit (stopped reading there)"
        );
    }

    #[tokio::test]
    async fn a_read_error_is_kept() {
        let broken = stream::iter(vec![
            Ok(vec![1u8; 10]),
            Err(std::io::Error::other("connection reset")),
        ]);
        let got = read_capped(None, broken, 1 << 20).await;
        assert!(matches!(got, Err(BodyError::Read(e)) if e.to_string() == "connection reset"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        let cases = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (16 << 20, "16 MiB"),
            (500 << 20, "500 MiB"),
            (3 << 30, "3 GiB"),
        ];
        for (n, want) in cases {
            assert_eq!(human_bytes(n), want);
        }
    }
}
