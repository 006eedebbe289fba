//! `podsnat render`: the nat table on stdout. Changes nothing.

use std::io::Write;

use super::{ExitStatus, emit, load_spec};
use crate::cli::SpecArgs;
use crate::error::Result;
use crate::render;

pub fn run(args: &SpecArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let table = render::nat_table(&load_spec(args)?);
    emit(out, &table)?;
    Ok(ExitStatus::Unchanged)
}
