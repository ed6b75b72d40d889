//! A gzip body that is compressed once and completed per request: the large, slowly changing
//! part (the fleet and device families, rendered once per crawl) is deflated into a stream
//! that is flushed to a byte boundary but not finished; each request appends a small tail
//! (the exporter's own families, current at that moment) as stored deflate blocks, and the
//! gzip trailer, whose CRC-32 is combined from the parts' without reading them again.
//! The result is one ordinary gzip member (RFC 1952), so every client can read it.
//!
//! The head is made of several `Stream`s written side by side (one per metric family, as the
//! device pages arrive) and joined at the end. Each stream is deflated in independent segments
//! of `SEGMENT` bytes of text (the compressor starts afresh for each, and each ends on a byte
//! boundary), so segments of different streams can be compressed by one compressor in any
//! order and joined in another: about 1.5 % larger than one continuous stream, and no stream
//! holds more than a segment of text.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};

/// The 10-byte gzip header: deflate, no flags, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Text compressed at a time: large enough that starting afresh costs little ratio, small
/// enough that a stream per metric family holds little.
pub const SEGMENT: usize = 64 * 1024;

/// The compressor (level 1: see BENCHMARKS.md) that the streams of one head share. Its state
/// (about half a MiB) is allocated when the first segment is deflated, and freed with it
/// at the end of the crawl.
pub struct Deflater {
    compress: Option<Compress>,
    scratch: Vec<u8>,
    /// A segment's output, until it is copied out.
    out: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

impl Deflater {
    pub fn new() -> Deflater {
        Deflater {
            compress: None,
            scratch: Vec::new(),
            out: Vec::new(),
        }
    }

    /// `text` as deflate blocks of their own (no reference before them), ending on a byte
    /// boundary without a final block. (Through a fixed scratch buffer: `compress_vec`
    /// zero-fills its vector's whole spare capacity on every call.)
    fn segment(&mut self, mut input: &[u8]) -> Bytes {
        let compress = match &mut self.compress {
            Some(compress) => {
                compress.reset();
                compress
            }
            None => {
                self.scratch = vec![0; 32 * 1024];
                self.compress
                    .insert(Compress::new(Compression::fast(), false))
            }
        };
        let out = &mut self.out;
        out.clear();
        loop {
            let (before_in, before_out) = (compress.total_in(), compress.total_out());
            let status = compress.compress(input, &mut self.scratch, FlushCompress::Sync);
            let consumed = (compress.total_in() - before_in) as usize;
            let written = (compress.total_out() - before_out) as usize;
            input = &input[consumed..];
            out.extend_from_slice(&self.scratch[..written]);
            // Done when the input is used up and the compressor did not fill the scratch
            // buffer (so it has nothing more to write). An error cannot happen with a valid
            // stream; stop then.
            match status {
                Ok(Status::Ok | Status::BufError)
                    if input.is_empty() && written < self.scratch.len() =>
                {
                    break
                }
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) | Err(_) => break,
            }
        }
        // Copied out at its size: a segment is kept until the next crawl.
        Bytes::copy_from_slice(out)
    }
}

/// Text written in order and deflated a segment at a time.
#[derive(Default)]
pub struct Stream {
    /// Not deflated yet: less than a segment.
    text: Vec<u8>,
    chunks: Vec<Bytes>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// The buffer to write text into; call `spill` after writing.
    pub fn text(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Deflates the buffered text once there is a segment of it.
    pub fn spill(&mut self, deflater: &mut Deflater) {
        if self.text.len() >= SEGMENT {
            self.flush(deflater);
        }
    }

    pub fn write(&mut self, data: &[u8], deflater: &mut Deflater) {
        self.text.extend_from_slice(data);
        self.spill(deflater);
    }

    /// Deflates whatever text is buffered.
    fn flush(&mut self, deflater: &mut Deflater) {
        if self.text.is_empty() {
            return;
        }
        self.crc.update(&self.text);
        self.len += self.text.len() as u64;
        self.chunks.push(deflater.segment(&self.text));
        self.text.clear();
    }

    /// Uncompressed length of the text written so far.
    pub fn text_len(&self) -> u64 {
        self.len + self.text.len() as u64
    }

    /// Whether some of the text was deflated.
    pub fn deflated(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// The text not deflated yet: all of it unless `deflated`.
    pub fn into_text(self) -> Vec<u8> {
        self.text
    }
}

/// Writes one stream into a head.
pub struct Writer {
    deflater: Deflater,
    stream: Stream,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            deflater: Deflater::new(),
            stream: Stream::new(),
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.stream.write(data, &mut self.deflater);
    }

    pub fn finish(mut self) -> Head {
        Head::join([self.stream], &mut self.deflater)
    }
}

/// A deflated head: gzip header and deflate blocks ending on a byte boundary, no final block,
/// in chunks (joined streams are not copied into one buffer).
#[derive(Clone)]
pub struct Head {
    chunks: Vec<Bytes>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Head {
    /// A head that holds no text.
    pub fn empty() -> Head {
        Head::join([], &mut Deflater::new())
    }

    /// The streams one after the other, each flushed first.
    pub fn join(streams: impl IntoIterator<Item = Stream>, deflater: &mut Deflater) -> Head {
        let mut head = Head {
            chunks: vec![Bytes::from_static(&HEADER)],
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        for mut stream in streams {
            stream.flush(deflater);
            head.crc.combine(&stream.crc);
            head.len += stream.len;
            head.chunks.append(&mut stream.chunks);
        }
        head
    }

    /// The compressed head in order, to be sent as is and followed by `tail(...)`.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Compressed length of the head.
    pub fn compressed_len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
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
        let mut text = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader().read_to_end(&mut text)?;
        Ok(text)
    }

    /// The head's text, inflated as it is read.
    pub fn reader(&self) -> impl Read + Send + 'static {
        let mut parts = self.chunks.clone();
        parts.push(self.tail(&[]));
        flate2::read::GzDecoder::new(Chunks {
            parts: parts.into_iter(),
            current: Bytes::new(),
        })
    }

    /// Uncompressed length of the head's text.
    pub fn text_len(&self) -> u64 {
        self.len
    }
}

/// Reads chunks one after the other.
struct Chunks {
    parts: std::vec::IntoIter<Bytes>,
    current: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use bytes::Buf;
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Ok(n);
            }
            match self.parts.next() {
                Some(part) => self.current = part,
                None => return Ok(0),
            }
        }
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
        let mut writer = Writer::new();
        for chunk in head_text.as_bytes().chunks(7_000) {
            writer.write(chunk);
        }
        let head = writer.finish();
        assert!(head.chunks().len() > 10, "several segments");
        assert!(head.compressed_len() < head_text.len() / 20);
        for tail_text in ["", "balena_up 1\n", &"x".repeat(200_000)] {
            let tail = head.tail(tail_text.as_bytes());
            let whole = gunzip(&[&head.chunks().concat(), &tail]);
            assert_eq!(whole.len(), head_text.len() + tail_text.len());
            assert_eq!(whole, [head_text.as_bytes(), tail_text.as_bytes()].concat());
        }
        assert_eq!(head.inflate().unwrap(), head_text.as_bytes());
        assert_eq!(head.text_len(), head_text.len() as u64);
    }

    #[test]
    fn an_empty_head_works_too() {
        let head = Head::empty();
        assert_eq!(
            gunzip(&[&head.chunks().concat(), &head.tail(b"up 1\n")]),
            b"up 1\n"
        );
        assert_eq!(gunzip(&[&head.chunks().concat(), &head.tail(b"")]), b"");
        assert!(head.inflate().unwrap().is_empty());
    }

    #[test]
    fn streams_written_side_by_side_join_in_order() {
        let mut deflater = Deflater::new();
        let texts: Vec<String> = (0..5)
            .map(|i| format!("family_{i}{{uuid=\"{i:032x}\"}} {i}\n").repeat(4_000 + i * 3_000))
            .collect();
        let mut streams: Vec<Stream> = texts.iter().map(|_| Stream::new()).collect();
        // Interleaved, as device pages fill every family a little at a time.
        for round in 0..200 {
            for (text, stream) in texts.iter().zip(&mut streams) {
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                let per_round = lines.len().div_ceil(200);
                for line in lines.iter().skip(round * per_round).take(per_round) {
                    stream.write(line.as_bytes(), &mut deflater);
                }
            }
        }
        let head = Head::join(streams, &mut deflater);
        assert_eq!(
            head.text_len(),
            texts.iter().map(|t| t.len() as u64).sum::<u64>()
        );
        let whole = gunzip(&[&head.chunks().concat(), &head.tail(b"end\n")]);
        assert_eq!(whole, [texts.concat().as_bytes(), b"end\n"].concat());
        assert_eq!(head.inflate().unwrap(), texts.concat().as_bytes());
    }

    #[test]
    fn the_trailer_is_what_a_one_shot_encoder_writes() {
        use std::io::Write;
        let (a, b) = ("first part\n".repeat(999), "second part\n");
        let mut writer = Writer::new();
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
