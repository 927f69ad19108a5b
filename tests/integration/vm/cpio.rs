//! A writer for the cpio "newc" format, the one the kernel unpacks as an
//! initramfs. Uncompressed: the kernel takes it as it is, and under software
//! emulation decompressing would cost more than reading the few megabytes.

/// Type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being written.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    ino: u32,
}

impl Archive {
    /// A directory (`path` without a leading `/`).
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | perm, (0, 0), data);
    }

    /// A character device node (`/dev/console` must exist before `/init` runs).
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("initramfs member under 4 GiB");
        let namesize = u32::try_from(name.len() + 1).expect("short name");
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One member read back: name, mode, rdev, data.
    type Member = (String, u32, (u32, u32), Vec<u8>);

    /// Reads an archive back.
    fn members(bytes: &[u8]) -> Vec<Member> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let start = at + 6 + 8 * i;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev, namesize) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name_at = at + 110;
            let name = std::str::from_utf8(&bytes[name_at..name_at + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[name_at + namesize - 1], 0);
            let data_at = (name_at + namesize).next_multiple_of(4);
            let data = bytes[data_at..data_at + size].to_vec();
            at = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, bytes.len());
                return out;
            }
            out.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn newc_members_read_back_aligned() {
        let mut a = Archive::default();
        a.dir("bin");
        a.char_dev("dev/console", 5, 1);
        a.file("bin/x", 0o755, b"abcde");
        a.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = a.finish();
        assert!(bytes.len().is_multiple_of(4));
        let m = members(&bytes);
        let names: Vec<&str> = m.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "dev/console", "bin/x", "init"]);
        assert_eq!(m[0].1, 0o040_755);
        assert_eq!((m[1].1, m[1].2), (0o020_600, (5, 1)));
        assert_eq!((m[2].1, m[2].3.as_slice()), (0o100_755, &b"abcde"[..]));
        assert_eq!(m[3].3, b"#!/bin/sh\n");
    }
}
