//! Probe answers as `pgvault.v1` messages (an agent sends them, the
//! coordinator reads them back), so both sides convert in one place.

use pgvault_proto::v1 as pb;

use crate::privileges::{Missing, Relation};

impl From<&Missing> for pb::MissingPrivileges {
    fn from(m: &Missing) -> Self {
        pb::MissingPrivileges {
            user: m.user.clone(),
            database: m.database.clone(),
            connect: m.connect,
            schemas: m.schemas.clone(),
            relations: m
                .relations
                .iter()
                .map(|r| pb::MissingRelation {
                    schema: r.schema.clone(),
                    name: r.name.clone(),
                    owner: r.owner.clone(),
                    is_sequence: r.is_sequence,
                })
                .collect(),
            large_objects: m.large_objects.clone(),
            bypass_rls: m.bypass_rls,
        }
    }
}

impl From<pb::MissingPrivileges> for Missing {
    fn from(m: pb::MissingPrivileges) -> Self {
        Missing {
            user: m.user,
            database: m.database,
            connect: m.connect,
            schemas: m.schemas,
            relations: m
                .relations
                .into_iter()
                .map(|r| Relation {
                    schema: r.schema,
                    name: r.name,
                    owner: r.owner,
                    is_sequence: r.is_sequence,
                })
                .collect(),
            large_objects: m.large_objects,
            bypass_rls: m.bypass_rls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_privileges_survive_the_wire() {
        let missing = Missing {
            user: "backup".into(),
            database: "Shop DB".into(),
            connect: true,
            schemas: vec!["sales".into()],
            relations: vec![Relation {
                schema: "sales".into(),
                name: "orders \"2024\"".into(),
                owner: "app".into(),
                is_sequence: false,
            }],
            large_objects: vec![424242],
            bypass_rls: true,
        };
        let wire = pb::MissingPrivileges::from(&missing);
        assert_eq!(Missing::from(wire), missing);
    }
}
