//! The agent crash drill: a real process is killed (SIGABRT) between a refund and the ack of
//! the event that caused it; restarted on the same data directory, the bus delivers the event
//! again and the case is answered, with one refund. The payments model used here refunds every
//! duplicate it sees, refunded or not, so only the effect ledger prevents a second refund.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use choreo_backoffice::BackOffice;
use choreo_consumers::store::Store;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn drill(data: &Path, agents: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agent_drill")).arg(data).arg(agents).args(args).output().expect("run agent_drill")
}

#[test]
fn a_crash_between_the_refund_and_the_ack_refunds_once_after_the_restart() {
    let agents = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../consumers/agents"), agents.path());
    let naive = Path::new(env!("CARGO_MANIFEST_DIR")).join("../consumers/tests/fixtures/naive_payments.toml");
    std::fs::copy(naive, agents.path().join("payments/offline.toml")).unwrap();
    let data = tempfile::tempdir().unwrap();

    let crashed = drill(data.path(), agents.path(), &["crash"]);
    let stdout = String::from_utf8_lossy(&crashed.stdout);
    assert_eq!(crashed.status.signal(), Some(6), "the drill did not die by abort: {crashed:?}");
    let case = stdout.lines().find_map(|l| l.strip_prefix("case ")).expect("the case id").to_owned();
    assert!(!stdout.contains("completed"), "{stdout}");
    let refunds = || BackOffice::open(&data.path().join("backoffice.db")).unwrap().refunds("o-1001").unwrap();
    assert_eq!(refunds().len(), 1, "the refund happened before the crash");

    let resumed = drill(data.path(), agents.path(), &["resume", &case]);
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(stdout.contains(&format!("completed {case}")), "{stdout}");

    assert_eq!(refunds().len(), 1, "refunded twice: {:?}", refunds());
    let store = Store::open(data.path()).unwrap();
    let answers =
        store.case_events(&case).unwrap().into_iter().filter(|e| e.event_type == "OrderSupportCompleted").count();
    assert_eq!(answers, 1);
    let refund = store.effects(&case).unwrap().into_iter().find(|e| e.tool == "payments.refund_charge").unwrap();
    assert!(refund.suppressed >= 1, "the redelivered event did not meet the ledger: {refund:?}");
}
