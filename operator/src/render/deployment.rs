//! The Deployment of the sidecar: key and config mounted read-only, probes on the admin
//! port, restricted pod security, no service-account token (the sidecar never calls the
//! API server).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_gateway_crds::v1alpha1::{McpGateway, PodOverrides};

use super::key_sync::{CSI_CLASS_ATTRIBUTE, CSI_DRIVER};
use super::service_account::USE_LABEL;
use super::{
    CONFIG_HASH_ANNOTATION, Defaults, facade_secret_name, metadata, object_name, selector,
    session_secret_name,
};
use crate::validate::{
    ADMIN_PORT, CONFIG_DIR, CONFIG_FILE_NAME, FACADE_DIR, IDP_DIR, IDP_SECRET_FILE_NAME, KEY_DIR,
    KEY_FILE_NAME, KeySource, PUBLIC_PORT, Plan, SESSION_DIR, TRUSTED_CA_DIR, TRUSTED_CA_FILE_NAME,
};

/// A small footprint by default: the sidecar idles at a few MB.
fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("50m")),
            ("memory".into(), q("32Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), q("128Mi"))])),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: String, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The volume the key file is read from; `None` when the sidecar reads Key Vault itself.
/// Whole-volume mounts (not subPath), so the kubelet's and the CSI driver's in-place
/// updates reach the sidecar, which reloads the file.
fn key_volume(gateway: &McpGateway, key: &KeySource) -> Option<Volume> {
    match key {
        // Only the one key, under a fixed file name.
        KeySource::Secret { name, key, .. } => Some(secret_volume(
            KEY_VOLUME,
            name.clone(),
            Some(vec![KeyToPath {
                key: key.clone(),
                path: KEY_FILE_NAME.into(),
                ..Default::default()
            }]),
        )),
        KeySource::CsiDriver(_) => Some(Volume {
            name: KEY_VOLUME.into(),
            csi: Some(CSIVolumeSource {
                driver: CSI_DRIVER.into(),
                read_only: Some(true),
                volume_attributes: Some(BTreeMap::from([(
                    CSI_CLASS_ATTRIBUTE.into(),
                    object_name(gateway),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        KeySource::Direct { .. } => None,
    }
}

const KEY_VOLUME: &str = "system-key";
const TRUSTED_CA_VOLUME: &str = "trusted-ca";
/// The pod template's digest of the `trustedCA` bundle: a new bundle rolls the pods.
pub const TRUSTED_CA_DIGEST_ANNOTATION: &str = "mcpgateway.dev/trusted-ca-sha256";

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The pod's labels: the gateway's, plus the workload identity webhook's opt-in when the
/// pod (or the CSI driver for it) reads Key Vault with the gateway's identity.
fn pod_labels(gateway: &McpGateway, plan: &Plan) -> BTreeMap<String, String> {
    // The user's first: the operator's own win (admission refuses the collisions already).
    let mut labels = overrides(gateway).labels.clone();
    labels.extend(super::labels(gateway));
    if plan.key.workload_identity().is_some() {
        labels.insert(USE_LABEL.into(), "true".into());
    }
    labels
}

/// `spec.pod`, or none.
fn overrides(gateway: &McpGateway) -> &PodOverrides {
    static NONE: std::sync::OnceLock<PodOverrides> = std::sync::OnceLock::new();
    gateway
        .spec
        .pod
        .as_ref()
        .unwrap_or_else(|| NONE.get_or_init(PodOverrides::default))
}

pub fn deployment(
    gateway: &McpGateway,
    plan: &Plan,
    defaults: &Defaults,
    config_hash: &str,
) -> Deployment {
    let spec = &gateway.spec;
    let key_volume = key_volume(gateway, &plan.key);
    let container = Container {
        name: "sidecar".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| defaults.sidecar_image.clone()),
        ),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: PUBLIC_PORT.into(),
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT.into(),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/livez", 10)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(
            [
                Some(mount("config", CONFIG_DIR)),
                key_volume.as_ref().map(|_| mount(KEY_VOLUME, KEY_DIR)),
                Some(mount("session-keys", SESSION_DIR)),
                plan.facade
                    .as_ref()
                    .map(|_| mount("idp-client-secret", IDP_DIR)),
                plan.facade
                    .as_ref()
                    .map(|_| mount("facade-keys", FACADE_DIR)),
                plan.trusted_ca
                    .as_ref()
                    .map(|_| mount(TRUSTED_CA_VOLUME, TRUSTED_CA_DIR)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..Default::default()
    };
    let overrides = overrides(gateway);
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    let pod = PodSpec {
        containers: vec![container],
        node_selector: non_empty(&overrides.node_selector),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        affinity: overrides.affinity.clone(),
        priority_class_name: overrides.priority_class_name.clone(),
        image_pull_secrets: (!overrides.image_pull_secrets.is_empty())
            .then(|| overrides.image_pull_secrets.clone()),
        service_account_name: Some(object_name(gateway)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            // Secret volumes are mounted 0440 root:root; the kubelet gives them this group so
            // that the sidecar (65532) can read its key files (a real kubelet proved it:
            // tests/tests/real_node.rs).
            fs_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Open SSE streams get time to drain (the sidecar drains for 30 s on SIGTERM).
        termination_grace_period_seconds: Some(40),
        // Replicas spread over zones and nodes where the cluster allows it; never unschedulable
        // for it (a one-node or one-zone cluster still runs every replica).
        topology_spread_constraints: Some(
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
                .into_iter()
                .map(|key| TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: key.into(),
                    when_unsatisfiable: "ScheduleAnyway".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector(gateway)),
                        ..Default::default()
                    }),
                    // Only this revision's pods count, so a rollout spreads the new ones too.
                    match_label_keys: Some(vec!["pod-template-hash".into()]),
                    ..Default::default()
                })
                .collect(),
        ),
        volumes: Some(
            [
                Some(Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: object_name(gateway),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                key_volume,
                Some(secret_volume(
                    "session-keys",
                    session_secret_name(gateway),
                    None,
                )),
                plan.facade.as_ref().map(|f| {
                    secret_volume(
                        "idp-client-secret",
                        f.client_secret.clone(),
                        Some(vec![KeyToPath {
                            key: f.client_secret_key.clone(),
                            path: IDP_SECRET_FILE_NAME.into(),
                            ..Default::default()
                        }]),
                    )
                }),
                plan.facade
                    .as_ref()
                    .map(|_| secret_volume("facade-keys", facade_secret_name(gateway), None)),
                plan.trusted_ca.as_ref().map(|ca| Volume {
                    name: TRUSTED_CA_VOLUME.into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: ca.config_map.clone(),
                        items: Some(vec![KeyToPath {
                            key: ca.key.clone(),
                            path: TRUSTED_CA_FILE_NAME.into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..Default::default()
    };
    Deployment {
        metadata: metadata(gateway, object_name(gateway)),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(gateway)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(gateway, plan)),
                    annotations: Some(
                        overrides
                            .annotations
                            .clone()
                            .into_iter()
                            .map(Some)
                            .chain([
                                Some((CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())),
                                plan.trusted_ca
                                    .as_ref()
                                    .and_then(|ca| ca.digest.clone())
                                    .map(|digest| {
                                        (TRUSTED_CA_DIGEST_ANNOTATION.to_string(), digest)
                                    }),
                            ])
                            .flatten()
                            .collect(),
                    ),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Defaults, build};
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    fn render(spec: serde_json::Value) -> Deployment {
        let gw = gateway(spec);
        build(
            &gw,
            &validate(&gw).unwrap(),
            &Default::default(),
            &Defaults::new("registry.example/sidecar:1"),
        )
        .deployment
    }

    #[test]
    fn restricted_pod_security() {
        let d = render(oidc_spec());
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.fs_group,
            Some(65532),
            "the sidecar must be able to read 0440 Secret files"
        );
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }

    #[test]
    fn key_and_config_are_mounted_read_only_without_subpath() {
        let d = render(oidc_spec());
        let pod = d.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/sidecar:1"));
        assert_eq!(
            c.args.as_ref().unwrap(),
            &["--config", "/etc/mcp-gateway/config.yaml"]
        );
        for m in c.volume_mounts.as_ref().unwrap() {
            assert_eq!(m.read_only, Some(true), "{}", m.name);
            assert!(
                m.sub_path.is_none(),
                "subPath mounts never see Secret updates"
            );
        }
        let key = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "system-key")
            .unwrap();
        let secret = key.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("fn-keys"));
        let item = &secret.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("mcp_extension", "key")
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
    }

    fn key_vault(sync: &str) -> serde_json::Value {
        let mut spec = oidc_spec();
        spec["systemKey"] = serde_json::json!({"keyVault": {"vaultName": "kv1", "sync": sync,
            "clientId": "00000000-0000-0000-0000-00000000000c",
            "tenantId": "00000000-0000-0000-0000-00000000000d"}});
        spec
    }

    fn pod_of(d: Deployment) -> (PodSpec, BTreeMap<String, String>) {
        let template = d.spec.unwrap().template;
        (
            template.spec.unwrap(),
            template.metadata.unwrap().labels.unwrap(),
        )
    }

    #[test]
    fn csi_driver_mounts_the_secret_provider_class_with_workload_identity() {
        let (pod, labels) = pod_of(render(key_vault("CsiDriver")));
        assert_eq!(pod.service_account_name.as_deref(), Some("weather-gateway"));
        assert_eq!(labels[USE_LABEL], "true");
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "system-key")
            .unwrap();
        let csi = volume.csi.unwrap();
        assert_eq!(csi.driver, "secrets-store.csi.k8s.io");
        assert_eq!(csi.read_only, Some(true));
        assert_eq!(
            csi.volume_attributes.unwrap()["secretProviderClass"],
            "weather-gateway"
        );
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "system-key")
            .unwrap();
        assert_eq!(mount.mount_path, KEY_DIR);
    }

    #[test]
    fn direct_mounts_no_key_and_opts_into_workload_identity() {
        let (pod, labels) = pod_of(render(key_vault("Direct")));
        assert_eq!(labels[USE_LABEL], "true");
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "system-key"));
        assert!(
            pod.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .all(|m| m.name != "system-key")
        );
        // A user's Secret needs no identity: no webhook label.
        let (_, labels) = pod_of(render(oidc_spec()));
        assert!(!labels.contains_key(USE_LABEL));
    }

    #[test]
    fn replicas_spread_softly_over_zones_and_nodes() {
        let gw = gateway(oidc_spec());
        let plan = validate(&gw).unwrap();
        let d = build(&gw, &plan, &Default::default(), &Defaults::new("img")).deployment;
        let pod = d.spec.unwrap().template.spec.unwrap();
        let spread = pod.topology_spread_constraints.unwrap();
        let keys: Vec<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
        assert_eq!(
            keys,
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        );
        for c in &spread {
            assert_eq!(
                c.when_unsatisfiable, "ScheduleAnyway",
                "never unschedulable for it"
            );
            assert_eq!(c.max_skew, 1);
            let labels = c
                .label_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap();
            assert_eq!(labels["app.kubernetes.io/instance"], "weather");
        }
    }

    #[test]
    fn a_trusted_ca_is_mounted_and_its_digest_rolls_the_pods() {
        let mut spec = oidc_spec();
        spec["trustedCA"] =
            serde_json::json!({"configMapRef": {"name": "corp-ca", "key": "bundle.pem"}});
        let gw = gateway(spec);
        let mut plan = validate(&gw).unwrap();
        assert_eq!(
            plan.sidecar.trusted_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/mcp-gateway-trust/ca.crt"))
        );
        let template = |plan: &Plan| {
            let d = build(&gw, plan, &Default::default(), &Defaults::new("img")).deployment;
            d.spec.unwrap().template
        };
        let before = template(&plan);
        plan.trusted_ca.as_mut().unwrap().digest = Some("aaaa".into());
        let first = template(&plan);
        plan.trusted_ca.as_mut().unwrap().digest = Some("bbbb".into());
        let second = template(&plan);
        let digest = |t: &PodTemplateSpec| {
            t.metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()
                .get(TRUSTED_CA_DIGEST_ANNOTATION)
                .cloned()
        };
        assert_eq!(digest(&before), None);
        assert_eq!(digest(&first).as_deref(), Some("aaaa"));
        assert_ne!(first, second, "a new bundle changes the pod template");

        let pod = first.spec.unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "trusted-ca")
            .unwrap();
        let source = volume.config_map.unwrap();
        assert_eq!(source.name, "corp-ca");
        let items = source.items.unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("bundle.pem", "ca.crt")
        );
        let mount = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "trusted-ca")
            .unwrap()
            .clone();
        assert_eq!(mount.mount_path, "/etc/mcp-gateway-trust");
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.sub_path, None);
    }

    #[test]
    fn config_changes_roll_pods_and_overrides_apply() {
        let a = render(oidc_spec());
        let mut spec = oidc_spec();
        spec["route"]["host"] = "other.example.com".into();
        spec["image"] = "mine/sidecar:2".into();
        spec["replicas"] = 3.into();
        let b = render(spec);
        let hash = |d: &Deployment| {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
        let bs = b.spec.unwrap();
        assert_eq!(bs.replicas, Some(3));
        assert_eq!(
            bs.template.spec.unwrap().containers[0].image.as_deref(),
            Some("mine/sidecar:2")
        );
    }

    #[test]
    fn pod_overrides_reach_the_pod_but_never_the_operators_own_fields() {
        let mut spec = oidc_spec();
        spec["pod"] = serde_json::json!({
            "nodeSelector": {"agentpool": "mcp"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mcp", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
            "priorityClassName": "mcp-high",
            "imagePullSecrets": [{"name": "acr-pull"}],
            "labels": {"team": "payments", "app.kubernetes.io/instance": "hijack"},
            "annotations": {"example.com/owner": "payments", "mcpgateway.dev/config-hash": "forged"},
        });
        let d = render(spec);
        let template = d.spec.unwrap().template;
        let meta = template.metadata.unwrap();
        let pod = template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["agentpool"], "mcp");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert!(pod.affinity.unwrap().node_affinity.is_some());
        assert_eq!(pod.priority_class_name.as_deref(), Some("mcp-high"));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "acr-pull");
        // The spread and the security context stay the operator's.
        assert_eq!(pod.topology_spread_constraints.unwrap().len(), 2);
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "payments");
        // Admission refuses these; were one stored anyway, the selector still holds.
        assert_eq!(labels["app.kubernetes.io/instance"], "weather");
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["example.com/owner"], "payments");
        assert_ne!(annotations[CONFIG_HASH_ANNOTATION], "forged");

        // Without `pod`, none of them.
        let pod = render(oidc_spec()).spec.unwrap().template.spec.unwrap();
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        assert!(pod.affinity.is_none() && pod.image_pull_secrets.is_none());
    }
}
