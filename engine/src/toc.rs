//! Reads the table of contents of a `pg_dump -Fc` archive (the recovery
//! point's `schema.dump`): every entry's dump id, type (`desc`), schema,
//! name (`tag`), source OID and the dump ids it depends on. `pg_restore -l`
//! prints the same entries but without dependencies and with names that
//! cannot be split when they contain spaces; selective restores need both.
//!
//! The layout follows PostgreSQL's `pg_backup_archiver.c` (`ReadHead`,
//! `ReadToc`) and `pg_backup_custom.c` (`_ReadExtraToc`), archive versions
//! 1.12 to 1.16 (pg_dump 11 to 17).

use super::error::{EngineError, ErrorCode};

/// One TOC entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TocEntry {
    pub dump_id: i64,
    /// Object OID on the source (`0` for comments, ACLs and the like).
    pub oid: u32,
    /// `TABLE`, `INDEX`, `FK CONSTRAINT`, `COMMENT`, …
    pub desc: String,
    /// Schema name; empty for objects outside schemas.
    pub namespace: String,
    /// Object name; for constraints and triggers `"<table> <name>"`.
    pub tag: String,
    /// Dump ids this entry depends on.
    pub deps: Vec<i64>,
}

const MAGIC: &[u8] = b"PGDMP";
const MIN_MINOR: u8 = 12;
const MAX_MINOR: u8 = 16;
/// `archCustom` in `pg_backup.h`.
const FORMAT_CUSTOM: u8 = 1;

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    int_size: usize,
    off_size: usize,
}

impl Reader<'_> {
    fn bad(&self, why: &str) -> EngineError {
        EngineError::new(
            ErrorCode::ManifestInvalid,
            format!(
                "schema.dump is not a readable pg_dump archive ({why} at byte {})",
                self.at
            ),
        )
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], EngineError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.bad("unexpected end"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, EngineError> {
        Ok(self.bytes(1)?[0])
    }

    /// `ReadInt`: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self) -> Result<i64, EngineError> {
        let negative = self.byte()? != 0;
        let size = self.int_size;
        let mut value: i64 = 0;
        for (i, b) in self.bytes(size)?.iter().enumerate() {
            value |= i64::from(*b) << (8 * i);
        }
        Ok(if negative { -value } else { value })
    }

    /// `ReadStr`: a length (`-1` is NULL), then the bytes.
    fn string(&mut self) -> Result<Option<String>, EngineError> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| self.bad("bad string length"))?;
        let bytes = self.bytes(len)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn text(&mut self) -> Result<String, EngineError> {
        Ok(self.string()?.unwrap_or_default())
    }
}

/// Parses the archive's header and TOC (the data blocks that follow are
/// not read; a schema-only archive has none).
pub(crate) fn read_toc(data: &[u8]) -> Result<Vec<TocEntry>, EngineError> {
    let mut r = Reader {
        data,
        at: 0,
        int_size: 4,
        off_size: 8,
    };
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err(r.bad("no PGDMP magic"));
    }
    let (major, minor, _revision) = (r.byte()?, r.byte()?, r.byte()?);
    if major != 1 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return Err(r.bad(&format!("unsupported archive version {major}.{minor}")));
    }
    r.int_size = usize::from(r.byte()?);
    r.off_size = usize::from(r.byte()?);
    if !(1..=8).contains(&r.int_size) || !(1..=16).contains(&r.off_size) {
        return Err(r.bad("bad integer or offset size"));
    }
    if r.byte()? != FORMAT_CUSTOM {
        return Err(r.bad("not a custom-format archive"));
    }
    if minor >= 15 {
        r.byte()?; // compression algorithm
    } else {
        r.int()?; // compression level
    }
    for _ in 0..7 {
        r.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    r.string()?; // database name
    r.string()?; // server version
    r.string()?; // pg_dump version

    let count = r.int()?;
    let count = usize::try_from(count).map_err(|_| r.bad("bad entry count"))?;
    let mut entries = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let dump_id = r.int()?;
        r.int()?; // had dumper
        r.string()?; // catalog id: table oid
        let oid = r.text()?.parse::<u32>().unwrap_or(0);
        let tag = r.text()?;
        let desc = r.text()?;
        r.int()?; // section
        r.string()?; // definition
        r.string()?; // drop statement
        r.string()?; // copy statement
        let namespace = r.text()?;
        r.string()?; // tablespace
        if minor >= 14 {
            r.string()?; // table access method
        }
        if minor >= 16 {
            r.int()?; // relkind
        }
        r.string()?; // owner
        r.string()?; // "with oids", always false
        let mut deps = Vec::new();
        while let Some(dep) = r.string()? {
            deps.push(dep.parse::<i64>().map_err(|_| r.bad("bad dependency"))?);
        }
        // Custom format: data state flag and data offset.
        r.byte()?;
        r.bytes(r.off_size)?;
        entries.push(TocEntry {
            dump_id,
            oid,
            desc,
            namespace,
            tag,
            deps,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes archives the way pg_dump does, for the parser's tests.
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, v: i64) {
            self.0.push(u8::from(v < 0));
            self.0
                .extend_from_slice(&v.unsigned_abs().to_le_bytes()[..4]);
        }
        fn string(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    fn archive(minor: u8) -> Vec<u8> {
        let mut w = Writer(b"PGDMP".to_vec());
        w.0.extend_from_slice(&[1, minor, 0, 4, 8, FORMAT_CUSTOM]);
        if minor >= 15 {
            w.0.push(0);
        } else {
            w.int(-1);
        }
        for v in [1, 2, 3, 4, 5, 126, 0] {
            w.int(v);
        }
        for s in ["db", "15.8", "15.8"] {
            w.string(Some(s));
        }
        w.int(2);
        for (id, oid, tag, desc, ns, deps) in [
            (6, "16387", "app", "SCHEMA", None, vec![]),
            (218, "16404", "my table", "TABLE", Some("app"), vec!["6"]),
        ] {
            w.int(id);
            w.int(0);
            w.string(Some("1259"));
            w.string(Some(oid));
            w.string(Some(tag));
            w.string(Some(desc));
            w.int(2);
            w.string(Some("CREATE …;"));
            w.string(Some(""));
            w.string(None);
            w.string(ns);
            w.string(Some(""));
            if minor >= 14 {
                w.string(Some("heap"));
            }
            if minor >= 16 {
                w.int(i64::from(b'r'));
            }
            w.string(Some("postgres"));
            w.string(Some("false"));
            for d in deps {
                w.string(Some(d));
            }
            w.string(None);
            w.0.push(3);
            w.0.extend_from_slice(&[0; 8]);
        }
        w.0
    }

    #[test]
    fn reads_entries_of_every_supported_version() {
        for minor in [13, 14, 15, 16] {
            let toc = read_toc(&archive(minor)).unwrap();
            assert_eq!(toc.len(), 2, "version 1.{minor}");
            assert_eq!(
                toc[1],
                TocEntry {
                    dump_id: 218,
                    oid: 16404,
                    desc: "TABLE".into(),
                    namespace: "app".into(),
                    tag: "my table".into(),
                    deps: vec![6],
                }
            );
            assert_eq!(toc[0].namespace, "");
        }
    }

    #[test]
    fn rejects_other_files_and_truncation() {
        assert!(read_toc(b"not an archive").is_err());
        let full = archive(14);
        let err = read_toc(&full[..full.len() - 3]).unwrap_err();
        assert_eq!(err.code, ErrorCode::ManifestInvalid);
        let mut old = archive(14);
        old[6] = 9;
        assert!(read_toc(&old).is_err());
    }
}
