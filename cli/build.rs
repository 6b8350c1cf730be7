//! Embeds the SDK crate in the binary, so `assegai new --template rust` can write it into the
//! agent (`vendor/assegai-sdk`) and the agent builds anywhere: outside this checkout, offline and
//! inside `run --docker`'s build context, against exactly this binary's protocol.
//!
//! The SDK's manifest inherits from this workspace (`version.workspace = true`, ...), which means
//! nothing outside it, so the copy gets a standalone manifest: the inherited values filled in from
//! the workspace's, as `cargo package` does, without the dev-dependencies and lints an agent does
//! not build.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use toml::{Table, Value};

fn main() {
    let cli = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = cli.parent().expect("cli/ is in the workspace").to_path_buf();
    let sdk = root.join("sdk");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", sdk.display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());

    let workspace = read_table(&root.join("Cargo.toml"));
    let manifest = standalone_manifest(&read_table(&sdk.join("Cargo.toml")), &workspace);
    let manifest_path = out.join("sdk-Cargo.toml");
    fs::write(&manifest_path, manifest).expect("writing the SDK's standalone manifest");

    let mut files = vec![("Cargo.toml".to_owned(), manifest_path)];
    files.push(("README.md".to_owned(), sdk.join("README.md")));
    collect_sources(&sdk, &sdk.join("src"), &mut files);
    files.sort();
    let entries: String = files
        .iter()
        .map(|(rel, path)| format!("    ({rel:?}, include_str!({:?})),\n", path.display().to_string()))
        .collect();
    let code = format!(
        "/// The SDK crate's files, by path relative to its root.\npub const SDK_FILES: &[(&str, &str)] = &[\n{entries}];\n"
    );
    fs::write(out.join("sdk_files.rs"), code).expect("writing the SDK's file list");
}

fn read_table(path: &Path) -> Table {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn collect_sources(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_sources(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under the SDK").to_string_lossy().replace('\\', "/");
            files.push((rel, path));
        }
    }
}

/// `{ workspace = true }` as the value of a key.
fn inherits(value: &Value) -> bool {
    value.as_table().and_then(|t| t.get("workspace")).and_then(Value::as_bool) == Some(true)
}

fn standalone_manifest(sdk: &Table, workspace: &Table) -> String {
    let ws = workspace["workspace"].as_table().expect("[workspace]");
    let ws_package = ws["package"].as_table().expect("[workspace.package]");
    let ws_deps = ws["dependencies"].as_table().expect("[workspace.dependencies]");

    let mut package = sdk["package"].as_table().expect("[package]").clone();
    for (key, value) in package.iter_mut() {
        if inherits(value) {
            *value = ws_package.get(key).unwrap_or_else(|| panic!("workspace.package.{key}")).clone();
        }
    }
    package.insert("publish".into(), Value::Boolean(false));

    let mut deps = Table::new();
    for (name, value) in sdk["dependencies"].as_table().expect("[dependencies]") {
        if !inherits(value) {
            deps.insert(name.clone(), value.clone());
            continue;
        }
        let mut dep = match ws_deps.get(name).unwrap_or_else(|| panic!("workspace.dependencies.{name}")) {
            Value::String(version) => Table::from_iter([("version".to_owned(), Value::String(version.clone()))]),
            Value::Table(t) => t.clone(),
            other => panic!("workspace.dependencies.{name} = {other}"),
        };
        assert!(!dep.contains_key("path"), "the SDK depends on {name} by path, which a copy cannot");
        let own = value.as_table().expect("checked by inherits");
        if let Some(Value::Array(extra)) = own.get("features") {
            let features = dep.entry("features").or_insert_with(|| Value::Array(Vec::new()));
            let list = features.as_array_mut().expect("features is an array");
            list.extend(extra.iter().filter(|f| !list.contains(f)).cloned().collect::<Vec<_>>());
        }
        for key in ["optional", "default-features"] {
            if let Some(v) = own.get(key) {
                dep.insert(key.to_owned(), v.clone());
            }
        }
        deps.insert(name.clone(), Value::Table(dep));
    }

    // Two tables serialised one after the other, so that [package] comes first.
    let section = |name: &str, table: Table| {
        toml::to_string(&Table::from_iter([(name.to_owned(), Value::Table(table))])).expect("a TOML table serialises")
    };
    format!(
        "# A copy of the assegai-sdk crate written by `assegai new`, so this agent builds on its own\n\
         # (offline, and in a container's build context). `assegai new` in a newer release writes a\n\
         # newer copy; or depend on the published crate instead once there is one.\n\n{}\n{}",
        section("package", package),
        section("dependencies", deps)
    )
}
