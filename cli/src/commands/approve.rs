//! `assegai approve`: the approval queue. `--list` prints pending requests, `ID --yes` approves one
//! without asking; otherwise a person decides at the terminal.

use anyhow::{Context, bail};
use assegai_proxy::sanitize::neutralize;
use assegai_sdk::wire::TxStatus;

use crate::{cli::ApproveArgs, commands::txs::print_rows, printer::Printer, settings::Settings};

pub async fn run(args: &ApproveArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let Some(id) = args.id.as_deref().filter(|_| !args.list) else {
        let mut rows = store.txs(None, Some(TxStatus::Pending), 1000)?;
        rows.reverse();
        return print_rows(&rows, args.json.json, printer, "No requests are waiting for approval.");
    };
    let Some(row) = store.tx(id)? else {
        bail!("no transaction request `{}` (see `assegai approve --list`)", neutralize(id));
    };
    if row.status != TxStatus::Pending {
        bail!("request {} is already {}; only pending requests can be approved", row.id, row.status.as_str());
    }
    if !args.yes {
        // Fail closed: moving money needs a person or an explicit flag.
        if !printer.interactive() {
            bail!("refusing to approve without a terminal to ask at; pass `--yes` to approve {}", row.id);
        }
        let ok = dialoguer::Confirm::new()
            .with_prompt(format!("Approve and sign {}: {}?", row.id, neutralize(&row.action)))
            .default(false)
            .interact()
            .context("reading your answer")?;
        if !ok {
            printer.info("Not approved; it is still pending.");
            return Ok(());
        }
    }
    match settings.admin().approve_tx(&row.id).await? {
        None => bail!("no proxy is running, so nothing can sign; start one with `assegai proxy`"),
        Some(false) => bail!("request {} was decided or expired meanwhile (see `assegai txs`)", row.id),
        Some(true) => {}
    }
    let spinner = printer.spinner("Signing and broadcasting…");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let done = loop {
        let now = store.tx(&row.id)?.ok_or_else(|| anyhow::anyhow!("request {} vanished", row.id))?;
        if now.tx_hash.is_some() || now.status != TxStatus::Approved {
            break now;
        }
        if std::time::Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("no hash after 2 minutes; see `assegai txs` for {}", row.id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    spinner.finish_and_clear();
    match (&done.tx_hash, done.status) {
        (Some(hash), _) => {
            printer.success(format!("Approved {}: {}", row.id, neutralize(&row.action)));
            printer.data(hash);
            Ok(())
        }
        (None, status) => bail!(
            "request {} is {}: {}",
            row.id,
            status.as_str(),
            done.error.as_deref().map_or_else(String::new, neutralize)
        ),
    }
}

