//! Secret keys kept in files: hex text, created with fresh random bytes on first use, readable
//! by the owner only (mode 0600 on Unix). A key's bytes are never logged.

use std::path::Path;

/// Reads the hex key at `path`, or creates it with `bytes` random bytes. Returns the bytes,
/// or a sentence saying what is wrong with the file.
pub fn load_or_create(path: &Path, bytes: usize) -> Result<Vec<u8>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = hex::decode(text.trim()).map_err(|_| "not a hex key".to_owned())?;
            match secret.len() >= bytes {
                true => Ok(secret),
                false => Err(format!("a key needs at least {bytes} bytes")),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; bytes];
            getrandom::fill(&mut secret).map_err(|error| error.to_string())?;
            write_private(path, &hex::encode(&secret)).map_err(|error| error.to_string())?;
            tracing::info!(path = %path.display(), "created a new key");
            Ok(secret)
        }
        Err(error) => Err(error.to_string()),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}
