//! Replacing a password file atomically, keeping it private.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a newly created password file: owner read/write only.
pub const NEW_FILE_MODE: u32 = 0o600;

/// The permission bits of `path` when group or others may access it, for a warning.
pub fn exposed_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// The file to replace: symlinks are followed, so the link stays and its target is rewritten.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(target) => Ok(target),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(e),
    }
}

/// Deletes the temporary file unless it was renamed into place.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn create_temp(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    let pid = std::process::id();
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut last_error = None;
    for attempt in 0..16u32 {
        let path = dir.join(format!(".{name}.tmp.{pid}.{nanos}.{attempt}"));
        match OpenOptions::new().write(true).create_new(true).mode(NEW_FILE_MODE).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

/// Writes `contents` to `path` through a temporary file in the same directory: write, fsync,
/// rename over the old file, fsync the directory. A reader sees the old file or the new one,
/// never half of one. An existing file keeps its mode and (when permitted) its owner; a new file
/// gets mode 0600.
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = resolve(path)?;
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
        .to_owned();
    let existing = fs::metadata(&target).ok();

    let (mut file, temp_path) = create_temp(&dir, &name)?;
    let mut guard = TempGuard(Some(temp_path.clone()));
    if let Some(meta) = &existing {
        file.set_permissions(fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))?;
        // Only root may give a file away; for anyone else owner and group are already theirs.
        let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp_path, &target)?;
    guard.0 = None;
    // Make the rename itself durable.
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_private_and_an_existing_one_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        replace_file(&path, b"a\n").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(exposed_mode(&path), None);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, b"b\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b\n");
        assert_eq!(exposed_mode(&path), Some(0o640));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_symlink_is_kept_and_its_target_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }
}
