//! The inflate part: the gzip device pages of a full crawl, written for `benches/inflate`.

use std::path::PathBuf;

use crate::support::{self, Recorded};
use crate::table::Table;

/// The gzipped device pages of a full crawl as the exporter reads them, for
/// `benches/inflate` (how long inflating them takes): each as its length (4 bytes, little
/// endian) and its bytes, in `target/bench/inflate-<devices>.bin`.
pub(crate) fn write_inflate_input(recorded: &Recorded) -> PathBuf {
    let mut table = Table::new(recorded);
    let mut out = Vec::new();
    let (mut after, mut plain, mut gzipped, mut pages) = (0, 0, 0, 0);
    loop {
        let (answer, last) = table.full_page(after, recorded.page_size as usize, true, true);
        // The empty page that ends the crawl is under 1 KiB: sent plain, not inflated.
        if let Some(body) = &answer.gzipped {
            plain += answer.body.len();
            gzipped += body.len();
            pages += 1;
            out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(body);
        }
        match last {
            Some(last) if answer.rows > 0 => after = last,
            _ => break,
        }
    }
    let file = support::results_dir().join(format!("inflate-{}.bin", recorded.devices));
    std::fs::write(&file, out).expect("write the inflate input");
    eprintln!(
        "inflate input: {pages} gzip device pages of {} devices, {} gzipped, {} plain: {}",
        recorded.devices,
        support::size(gzipped as u64),
        support::size(plain as u64),
        file.display()
    );
    file
}
