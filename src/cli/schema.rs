//! `zumik schema`: writes or checks the JSON Schemas of the public events.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::events::schema;

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Directory for the `<schema name>.json` files.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Only compare; exit 1 when a file differs from the generated schema.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let mut drift = 0;
    if !args.check {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
    }
    for (name, s) in schema::all() {
        let path = args.out.join(format!("{name}.json"));
        let text = schema::render(&s);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                eprintln!("{} differs from the generated schema", path.display());
                drift += 1;
            }
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(if drift > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
