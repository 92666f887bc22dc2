//! Building the kernel ELF.

use crate::util::{cargo, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const TARGET: &str = "x86_64-unknown-none";
pub const PACKAGE: &str = "basalt";
pub const BIN: &str = "basalt";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    pub fn from_debug_flag(debug: bool) -> Self {
        if debug {
            Profile::Debug
        } else {
            Profile::Release
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// Where `build` leaves the kernel for `profile`.
pub fn kernel_path(profile: Profile) -> PathBuf {
    workspace_root().join("target").join(TARGET).join(profile.dir()).join(BIN)
}

/// Builds the kernel and returns the path of its ELF.
pub fn build(profile: Profile) -> Result<PathBuf> {
    crate::tools::ensure_rust_targets()?;
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).arg("build").args([
        "--package",
        PACKAGE,
        "--bin",
        BIN,
        "--target",
        TARGET,
    ]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("kernel build failed ({status})");
    }
    let path = kernel_path(profile);
    if !path.is_file() {
        bail!("the build succeeded but {} is missing", path.display());
    }
    Ok(path)
}
