//! Files in and out: the walk of `vault put` (object names are relative paths with `/`),
//! streaming with a progress bar, and safe output paths for `vault get` (an object name
//! from a shared collection is the sharer's choice: `..` or `/` in it must not write
//! outside the output directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use vault_core::{Collection, PutOptions};

use crate::error::{CliError, Result, NOT_FOUND};
use crate::offline::CliStore;
use crate::output::Output;

/// One file to upload.
pub struct Upload {
    /// Where it is.
    pub path: PathBuf,
    /// The object name.
    pub name: String,
    /// Its size when listed.
    pub size: u64,
}

/// The files under `paths`: a file as its file name, a directory as `dir/relative/path`
/// (recursively, sorted). Symbolic links and special files are skipped with a warning.
pub fn walk(paths: &[PathBuf], prefix: &str, out: &Output) -> Result<Vec<Upload>> {
    let mut uploads = Vec::new();
    for p in paths {
        let meta = fs::symlink_metadata(p)
            .map_err(|e| CliError::io(&format!("cannot read {}", p.display()), &e))?;
        let base = match p.components().next_back() {
            Some(Component::Normal(n)) => Some(utf8(Path::new(n))?),
            _ => None,
        };
        if meta.is_file() {
            let name =
                base.ok_or_else(|| CliError::general(format!("{} has no file name", p.display())))?;
            uploads.push(Upload {
                path: p.clone(),
                name: format!("{prefix}{name}"),
                size: meta.len(),
            });
        } else if meta.is_dir() {
            let start = match &base {
                Some(b) => format!("{prefix}{b}/"),
                None => prefix.to_owned(),
            };
            walk_dir(p, &start, &mut uploads, out)?;
        } else {
            out.warn(&format!(
                "skipped {} (not a regular file or directory)",
                p.display()
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for u in &uploads {
        if !seen.insert(u.name.as_str()) {
            return Err(
                CliError::general(format!("two files map to the object name {}", u.name))
                    .hint("use --prefix or put them separately"),
            );
        }
    }
    Ok(uploads)
}

fn walk_dir(dir: &Path, prefix: &str, uploads: &mut Vec<Upload>, out: &Output) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| CliError::io(&format!("cannot read {}", dir.display()), &e))?
        .collect::<io::Result<_>>()
        .map_err(|e| CliError::io(&format!("cannot read {}", dir.display()), &e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = utf8(Path::new(&e.file_name()))?;
        let meta = fs::symlink_metadata(&path)
            .map_err(|err| CliError::io(&format!("cannot read {}", path.display()), &err))?;
        if meta.is_file() {
            uploads.push(Upload {
                path,
                name: format!("{prefix}{name}"),
                size: meta.len(),
            });
        } else if meta.is_dir() {
            walk_dir(&path, &format!("{prefix}{name}/"), uploads, out)?;
        } else {
            out.warn(&format!(
                "skipped {} (not a regular file or directory)",
                path.display()
            ));
        }
    }
    Ok(())
}

fn utf8(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::general(format!("{} is not a UTF-8 name", p.display())))
}

/// Uploads `files` into `collection` in one batch (one signed manifest), streaming each
/// file (memory stays at about one page per file).
pub fn put_all(
    collection: &mut Collection<'_, CliStore>,
    files: &[Upload],
    out: &Output,
) -> Result<()> {
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = out.progress(total, "upload");
    let options = PutOptions::default();
    let mut batch = collection.batch();
    for f in files {
        bar.set_message(f.name.clone());
        let file = File::open(&f.path)
            .map_err(|e| CliError::io(&format!("cannot open {}", f.path.display()), &e))?;
        let mut reader = bar.wrap_read(file);
        batch.put_reader(&f.name, &mut reader, &options)?;
    }
    batch.commit()?;
    bar.finish_and_clear();
    Ok(())
}

/// Streams the object `name` into `target` (`-` for stdout). A file is written to a
/// temporary name beside it and renamed when the whole object verified; on any failure it
/// is removed, so no partial file is left.
pub fn get_one(
    collection: &Collection<'_, CliStore>,
    name: &str,
    target: &Path,
    force: bool,
    out: &Output,
) -> Result<u64> {
    let mut reader = collection.open(name)?;
    let size = reader.meta().size;
    let bar = out.progress(size, name);
    if target == Path::new("-") {
        let stdout = io::stdout();
        let mut w = bar.wrap_write(stdout.lock());
        let n = io::copy(&mut reader, &mut w).map_err(read_error)?;
        w.flush()
            .map_err(|e| CliError::io("cannot write to stdout", &e))?;
        bar.finish_and_clear();
        return Ok(n);
    }
    if target.exists() && !force {
        return Err(CliError::general(format!("{} exists", target.display()))
            .hint("use --force to replace it, or -o another path"));
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .map_err(|e| CliError::io(&format!("cannot create {}", parent.display()), &e))?;
    let file_name = target
        .file_name()
        .ok_or_else(|| CliError::general(format!("{} is not a file path", target.display())))?;
    let tmp = parent.join(format!(".{}.vault-partial", file_name.to_string_lossy()));
    let result = (|| -> Result<u64> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| CliError::io(&format!("cannot create {}", tmp.display()), &e))?;
        let mut w = bar.wrap_write(&file);
        let n = copy(&mut reader, &mut w)?;
        drop(w);
        file.sync_all()
            .map_err(|e| CliError::io(&format!("cannot write {}", tmp.display()), &e))?;
        fs::rename(&tmp, target)
            .map_err(|e| CliError::io(&format!("cannot write {}", target.display()), &e))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    bar.finish_and_clear();
    result
}

fn copy(reader: &mut dyn Read, writer: &mut dyn Write) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        writer
            .write_all(&buf[..k])
            .map_err(|e| CliError::io("cannot write the output", &e))?;
        n += k as u64;
    }
    zeroize::Zeroize::zeroize(&mut buf);
    Ok(n)
}

/// An error of the object reader: a vault error inside an `io::Error` (integrity, the
/// server) or a plain one.
fn read_error(e: io::Error) -> CliError {
    match e.downcast::<vault_core::Error>() {
        Ok(inner) => CliError::from(inner),
        Err(e) => CliError::io("read failed", &e),
    }
}

/// The path under `dir` of the object `name`, or `None` if the name could escape it (an
/// absolute name, `..`, `.`, an empty component, a backslash or a NUL).
pub fn safe_path(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.starts_with('/') || name.contains(['\\', '\0']) {
        return None;
    }
    let mut path = dir.to_path_buf();
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// The default output path of `get NAME`: its last component in the current directory.
pub fn default_output(name: &str) -> Result<PathBuf> {
    let last = name.rsplit('/').next().unwrap_or(name);
    safe_path(Path::new("."), last).ok_or_else(|| {
        CliError::new(
            NOT_FOUND,
            format!("the object name {name:?} cannot be a file name"),
        )
        .hint("give the output path with -o")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        let d = Path::new("out");
        assert_eq!(safe_path(d, "a/b.txt"), Some(PathBuf::from("out/a/b.txt")));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert_eq!(safe_path(d, bad), None, "{bad:?}");
        }
    }
}
