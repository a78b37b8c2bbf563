//! The set of datasets a process knows: built once (from the contracts compiled into the binary,
//! or from a directory of contract files) and passed to every stage. Every list of datasets and
//! the order they load in come from here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{Contract, ContractError};

/// Directory of `*.toml` contracts to use instead of the ones compiled into the binary.
pub const CONTRACTS_DIR_VAR: &str = "LAKE_CONTRACTS_DIR";

/// `(file name, text)` of every `contracts/*.toml`, gathered by `build.rs`.
const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_contracts.rs"));

/// The set of datasets this pipeline knows, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    contracts: BTreeMap<String, Contract>,
}

impl Registry {
    /// The contracts shipped in `contracts/`, compiled into the binary.
    pub fn builtin() -> Self {
        // The shipped contracts are checked by tests; a broken one is a build defect.
        Self::from_texts(BUILTIN.iter().map(|(f, t)| (f.to_string(), t.to_string())))
            .unwrap_or_else(|e| panic!("built-in contracts are invalid: {e}"))
    }

    /// Every `*.toml` in `dir`, each a contract.
    pub fn from_dir(dir: &Path) -> Result<Self, ContractError> {
        fn read(path: &Path) -> impl FnOnce(std::io::Error) -> ContractError + '_ {
            move |source| ContractError::Read {
                path: path.display().to_string(),
                source,
            }
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read(dir))? {
            let path = entry.map_err(read(dir))?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).map_err(read(&path))?;
                files.push((path.display().to_string(), text));
            }
        }
        if files.is_empty() {
            return Err(ContractError::Registry(vec![format!(
                "{} holds no *.toml contract",
                dir.display()
            )]));
        }
        Self::from_texts(files)
    }

    /// The contracts of `dir` when given, else the built-in ones.
    pub fn load(dir: Option<&Path>) -> Result<Self, ContractError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => Ok(Self::builtin()),
        }
    }

    /// [`Registry::load`] with the directory named by `LAKE_CONTRACTS_DIR`, if set.
    pub fn from_env() -> Result<Self, ContractError> {
        let dir = std::env::var_os(CONTRACTS_DIR_VAR).filter(|d| !d.is_empty());
        Self::load(dir.as_deref().map(Path::new))
    }

    fn from_texts(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ContractError> {
        let mut contracts = BTreeMap::new();
        let mut problems = Vec::new();
        for (path, text) in files {
            let contract = Contract::from_toml(&text).map_err(|source| ContractError::File {
                path: path.clone(),
                source: Box::new(source),
            })?;
            if let Some(other) = contracts.insert(contract.name.clone(), contract) {
                problems.push(format!(
                    "dataset `{}` is defined twice ({path})",
                    other.name
                ));
            }
        }
        let registry = Registry { contracts };
        problems.extend(registry.reference_problems());
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(ContractError::Registry(problems))
        }
    }

    /// References between contracts that do not resolve (`quality.references`).
    pub fn reference_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.contracts.values() {
            for r in &c.quality.references {
                let Some(parent) = self.contracts.get(&r.dataset) else {
                    out.push(format!(
                        "{}: quality.references names unknown dataset `{}`",
                        c.name, r.dataset
                    ));
                    continue;
                };
                if r.window_days.is_some() {
                    if parent.window_partition().is_none() {
                        out.push(format!(
                            "{}: quality.references window_days needs `{}` partitioned first by a utc_date partition; remove window_days or repartition",
                            c.name, r.dataset
                        ));
                    }
                    if c.date_partition().is_none() {
                        out.push(format!(
                            "{}: quality.references window_days needs a utc_date partition on `{}` to date its rows; remove window_days",
                            c.name, c.name
                        ));
                    }
                }
            }
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&Contract> {
        self.contracts.get(name)
    }

    /// Dataset names in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.contracts.keys().map(String::as_str)
    }

    /// The dataset names as a message lists them (`customers, orders, payments`).
    pub fn known(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.values()
    }

    /// Datasets with the ones they reference first (customers before the orders that name
    /// them), so quality checks and warehouse loads find their parents. Ties, and datasets
    /// caught in a reference cycle, go in name order.
    pub fn load_order(&self) -> Vec<&Contract> {
        fn parents<'a>(registry: &Registry, c: &'a Contract) -> BTreeSet<&'a str> {
            c.quality
                .references
                .iter()
                .map(|r| r.dataset.as_str())
                .filter(|d| *d != c.name && registry.contracts.contains_key(*d))
                .collect()
        }
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.contracts.len() {
            let ready = self
                .iter()
                .filter(|c| !placed.contains(c.name.as_str()))
                .find(|c| parents(self, c).iter().all(|p| placed.contains(p)))
                // A cycle: break it at the first remaining dataset by name.
                .or_else(|| self.iter().find(|c| !placed.contains(c.name.as_str())))
                .expect("a dataset remains");
            placed.insert(ready.name.as_str());
            order.push(ready);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str, references: &[&str]) -> String {
        let refs: Vec<String> = references
            .iter()
            .map(|d| format!("{{ column = \"ref\", dataset = \"{d}\" }}"))
            .collect();
        format!(
            r#"
            name = "{name}"
            key = "id"
            version_column = "ts"
            [[columns]]
            name = "id"
            type = "string"
            required = true
            [[columns]]
            name = "ref"
            type = "string"
            [[columns]]
            name = "ts"
            type = "timestamp"
            required = true
            [quality]
            references = [{}]
            "#,
            refs.join(", ")
        )
    }

    fn registry(specs: &[(&str, &[&str])]) -> Result<Registry, ContractError> {
        Registry::from_texts(
            specs
                .iter()
                .map(|(n, r)| (format!("{n}.toml"), contract(n, r))),
        )
    }

    #[test]
    fn parents_load_before_the_datasets_that_reference_them() {
        let reg = registry(&[
            ("a_payments", &["b_orders"]),
            ("b_orders", &["c_customers"]),
            ("c_customers", &["c_customers"]),
            ("d_loose", &[]),
        ])
        .unwrap();
        let order: Vec<&str> = reg.load_order().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(order, ["c_customers", "b_orders", "a_payments", "d_loose"]);
        let builtin = Registry::builtin();
        let order: Vec<&str> = builtin
            .load_order()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(order, ["customers", "orders", "payments"]);
    }

    #[test]
    fn a_reference_cycle_still_orders_every_dataset_once() {
        let reg = registry(&[("x", &["y"]), ("y", &["x"])]).unwrap();
        let order: Vec<&str> = reg.load_order().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(order, ["x", "y"]);
    }

    #[test]
    fn unknown_references_and_twice_defined_datasets_are_errors() {
        let err = registry(&[("x", &["nope"])]).unwrap_err().to_string();
        assert!(err.contains("unknown dataset `nope`"), "{err}");
        let err = registry(&[("x", &[]), ("x", &[])]).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn a_reference_window_needs_dates_on_both_sides() {
        let windowed =
            |text: String| text.replace("dataset = \"y\" }", "dataset = \"y\", window_days = 7 }");
        let err = Registry::from_texts([
            ("x.toml".to_owned(), windowed(contract("x", &["y"]))),
            ("y.toml".to_owned(), contract("y", &[])),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("needs `y` partitioned first by a utc_date partition"),
            "{err}"
        );
        assert!(err.contains("needs a utc_date partition on `x`"), "{err}");
        // The built-in payments -> orders window is valid.
        let builtin = Registry::builtin();
        assert_eq!(
            builtin.get("payments").unwrap().quality.references[0].window_days,
            Some(90)
        );
    }

    #[test]
    fn a_directory_of_contracts_is_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        for (name, refs) in [("p", vec!["q"]), ("q", vec![])] {
            std::fs::write(
                dir.path().join(format!("{name}.toml")),
                contract(name, &refs),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("README.md"), "not a contract").unwrap();
        let reg = Registry::from_dir(dir.path()).unwrap();
        assert_eq!(reg.known(), "p, q");
        let empty = tempfile::tempdir().unwrap();
        assert!(Registry::from_dir(empty.path()).is_err());
        std::fs::write(dir.path().join("bad.toml"), "name = 1").unwrap();
        let err = Registry::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
    }
}
