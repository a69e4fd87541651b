//! Files the daemon and the import write and read, safely in a directory others may write
//! to: a replacement is written to a fresh temporary file beside its target, created
//! exclusively and never through a symbolic link, and removed on any error; a read is bounded.

use std::fs::{File, OpenOptions, Permissions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How many fresh names are tried before giving up; each is random, so a clash means someone
/// is planting files faster than we can guess, not bad luck.
const ATTEMPTS: usize = 16;

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or the new one,
/// never a mix. `permissions`, when given, are set on the new file before it takes the
/// place of the old one (an import keeps the mode of the configuration it replaces).
pub fn replace(path: &Path, bytes: &[u8], permissions: Option<Permissions>) -> io::Result<()> {
    let dir = directory_of(path);
    let (mut file, temporary) = create_temporary(path, &dir)?;
    let written = (|| {
        file.write_all(bytes)?;
        if let Some(p) = permissions {
            file.set_permissions(p)?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `path` if it is a regular file of at most `limit` bytes. A device, a FIFO or a link
/// to one (`/dev/zero`) is refused before a byte is read; a file that grows past `limit`
/// while it is read is refused after `limit + 1` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than {} MiB", limit / (1024 * 1024)),
    )
}

fn directory_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// `.NAME.PID.RANDOM.tmp` in `dir`, opened with `O_CREAT|O_EXCL|O_NOFOLLOW`: an existing
/// file or link of that name is never opened, so nobody can make us write through it.
fn create_temporary(path: &Path, dir: &Path) -> io::Result<(File, PathBuf)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let random = RandomState::new().hash_one(std::time::SystemTime::now());
        let candidate = dir.join(format!(".{name}.{}.{random:016x}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&candidate)
        {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_link_in_place_of_the_file_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state.json");
        symlink(&victim, &path).unwrap();
        replace(&path, b"{}", None).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(!path.symlink_metadata().unwrap().is_symlink());
        assert_eq!(entries(dir.path()), ["state.json", "victim"]);
    }

    #[test]
    fn temporary_names_are_fresh_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.toml");
        let (_, a) = create_temporary(&path, dir.path()).unwrap();
        let (_, b) = create_temporary(&path, dir.path()).unwrap();
        assert_ne!(a, b);
        // The old fixed name, planted as a link, is left alone.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        symlink(&victim, dir.path().join(".out.toml.import")).unwrap();
        replace(&path, b"x", Some(Permissions::from_mode(0o640))).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_failed_replacement_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a directory fails after the temporary file is written.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"").unwrap();
        assert!(replace(&path, b"data", None).is_err());
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[test]
    fn reads_are_bounded_and_devices_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, vec![b' '; 1000]).unwrap();
        assert_eq!(read_bounded(&path, 1000).unwrap().len(), 1000);
        let e = read_bounded(&path, 999).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        let zero = dir.path().join("zero");
        symlink("/dev/zero", &zero).unwrap();
        let e = read_bounded(&zero, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }
}
