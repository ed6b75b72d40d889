//! A gzip body that is compressed once and completed per request: the large, slowly changing
//! part (the fleet and device families, rendered once per crawl) is deflated into a stream
//! that is flushed to a byte boundary but not finished; each request appends a small tail
//! (the exporter's own families, current at that moment) as stored deflate blocks, and the
//! gzip trailer, whose CRC-32 is combined from the two parts' without reading the head again.
//! The result is one ordinary gzip member (RFC 1952), so every client can read it.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};

/// The 10-byte gzip header: deflate, no flags, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses the head as it is written (level 1: see BENCHMARKS.md).
pub struct Writer {
    compress: Compress,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Writer {
    /// `capacity`: the expected compressed size, so that the body seldom grows (growing copies it).
    pub fn new(capacity: usize) -> Writer {
        let mut out = Vec::with_capacity(capacity.max(HEADER.len() + 64));
        out.extend_from_slice(&HEADER);
        Writer {
            compress: Compress::new(Compression::fast(), false),
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.len += data.len() as u64;
        self.deflate(data, FlushCompress::None);
    }

    /// Flushes to a byte boundary (a sync flush) and returns the head, without a final block.
    pub fn finish(mut self) -> Head {
        self.deflate(&[], FlushCompress::Sync);
        self.out.shrink_to_fit();
        Head {
            bytes: Bytes::from(self.out),
            crc: self.crc,
            len: self.len,
        }
    }

    /// Compresses through a fixed scratch buffer. (`Compress::compress_vec` zero-fills the
    /// whole spare capacity of its vector on every call: with a body of megabytes written
    /// 64 KiB at a time, that made rendering quadratic.)
    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) {
        let mut scratch = [0u8; 32 * 1024];
        loop {
            let (before_in, before_out) = (self.compress.total_in(), self.compress.total_out());
            let status = self.compress.compress(input, &mut scratch, flush);
            let consumed = (self.compress.total_in() - before_in) as usize;
            let written = (self.compress.total_out() - before_out) as usize;
            input = &input[consumed..];
            self.out.extend_from_slice(&scratch[..written]);
            // Done when the input is used up and the compressor did not fill the scratch
            // buffer (so it has nothing more to write). An error cannot happen with a valid
            // stream; stop then.
            match status {
                Ok(Status::Ok | Status::BufError)
                    if input.is_empty() && written < scratch.len() =>
                {
                    return
                }
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) | Err(_) => return,
            }
        }
    }
}

/// A deflated head: gzip header and deflate blocks ending on a byte boundary, no final block.
#[derive(Clone)]
pub struct Head {
    bytes: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Head {
    /// A head that holds no text.
    pub fn empty() -> Head {
        Writer::new(0).finish()
    }

    /// The compressed head, to be sent as is and followed by `tail(...)`.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The rest of the gzip member after the head: `text` in stored (uncompressed) deflate
    /// blocks, the last one final, then the trailer (CRC-32 and length of head and tail).
    pub fn tail(&self, text: &[u8]) -> Bytes {
        let blocks = text.len() / 0xffff + 1;
        let mut out = BytesMut::with_capacity(text.len() + 5 * blocks + 8);
        let mut chunks = text.chunks(0xffff).peekable();
        if chunks.peek().is_none() {
            out.put_slice(&[1, 0, 0, 0xff, 0xff]); // an empty final stored block
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let n = chunk.len() as u16;
            out.put_u8(u8::from(last)); // BFINAL, BTYPE 00 (stored), padding to the byte
            out.put_u16_le(n);
            out.put_u16_le(!n);
            out.put_slice(chunk);
        }
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(text);
        let mut crc = self.crc.clone();
        crc.combine(&tail_crc);
        out.put_u32_le(crc.finalize());
        // ISIZE is the length modulo 2^32.
        out.put_u32_le((self.len + text.len() as u64) as u32);
        out.freeze()
    }

    /// The head's text, inflated (for a client that does not accept gzip).
    pub fn inflate(&self) -> std::io::Result<Vec<u8>> {
        let tail = self.tail(&[]);
        let mut text = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        flate2::read::GzDecoder::new((&self.bytes[..]).chain(&tail[..])).read_to_end(&mut text)?;
        Ok(text)
    }

    /// Uncompressed length of the head's text.
    pub fn text_len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(parts: &[&[u8]]) -> Vec<u8> {
        let whole: Vec<u8> = parts.concat();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&whole[..])
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn head_and_tail_make_one_gzip_member() {
        let head_text = "balena_fleet_devices{fleet_slug=\"a/b\"} 3\n".repeat(50_000);
        let mut writer = Writer::new(1024);
        for chunk in head_text.as_bytes().chunks(7_000) {
            writer.write(chunk);
        }
        let head = writer.finish();
        assert!(head.bytes().len() < head_text.len() / 20);
        for tail_text in ["", "balena_up 1\n", &"x".repeat(200_000)] {
            let tail = head.tail(tail_text.as_bytes());
            let whole = gunzip(&[head.bytes(), &tail]);
            assert_eq!(whole.len(), head_text.len() + tail_text.len());
            assert_eq!(whole, [head_text.as_bytes(), tail_text.as_bytes()].concat());
        }
        assert_eq!(head.inflate().unwrap(), head_text.as_bytes());
        assert_eq!(head.text_len(), head_text.len() as u64);
    }

    #[test]
    fn an_empty_head_works_too() {
        let head = Head::empty();
        assert_eq!(gunzip(&[head.bytes(), &head.tail(b"up 1\n")]), b"up 1\n");
        assert_eq!(gunzip(&[head.bytes(), &head.tail(b"")]), b"");
        assert!(head.inflate().unwrap().is_empty());
    }

    #[test]
    fn the_trailer_is_what_a_one_shot_encoder_writes() {
        use std::io::Write;
        let (a, b) = ("first part\n".repeat(999), "second part\n");
        let mut writer = Writer::new(0);
        writer.write(a.as_bytes());
        let head = writer.finish();
        let tail = head.tail(b.as_bytes());
        let mut reference = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        reference.write_all(a.as_bytes()).unwrap();
        reference.write_all(b.as_bytes()).unwrap();
        let reference = reference.finish().unwrap();
        assert_eq!(tail[tail.len() - 8..], reference[reference.len() - 8..]);
    }
}
