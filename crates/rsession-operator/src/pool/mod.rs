//! Warm pools: the RSessionPool controller keeps `spec.replicas` Ready, unclaimed session pods
//! so that an RSession with `spec.poolRef` is bound to one in a single API call ([`crate::claim`])
//! instead of waiting for a pod to be scheduled, R to start and the readiness probe to pass.
//!
//! Per pool: one NetworkPolicy (`<pool>.rsessionpool`, applied before any pod exists) selecting
//! every pod with the pool's label, and one ConfigMap of the same name holding the R harness its
//! pods preload; per pool pod (`<pool>-<5 characters>`): the pod (owned by the pool until
//! claimed) and its credentials Secret (owned by the pod, so it goes with it whoever owns it). Unclaimed pool pods never expire; failed ones and ones built from an
//! older template are replaced; claimed ones are the RSession's and are never touched here.
//!
//! Layout, as for sessions: [`build`] (pure builders), [`plan`] (pure decision and counts),
//! [`reconcile`] (the API calls), [`passwords`] (the passwords of pods this replica created, so
//! a claim need not read them back), [`reserved`] (the pods this replica's claims are taking, so
//! concurrent claims pick different ones).

pub mod build;
pub mod passwords;
pub mod plan;
pub mod reconcile;
pub mod reserved;
