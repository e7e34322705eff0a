"""GraphQL documents the Shopify client sends, and the cost estimates pacing relies on.

Cost rules (Shopify's calculated query cost): scalars/enums 0, an object 1, a mutation field 10, a connection
2 + first x (cost of a node). The client learns the real per-item cost from answers; these are the starting guesses.
"""

from __future__ import annotations

import json

DEFINITION_FIELDS = """
  id
  type
  name
  displayNameKey
  metaobjectsCount
  fieldDefinitions { key name required type { name } }
"""

DEFINITION_BY_TYPE = (
    "query MetaobjectDefinitionByType($type: String!) {\n"
    "  metaobjectDefinitionByType(type: $type) {" + DEFINITION_FIELDS + "  }\n}"
)
# definition 1 + fieldDefinitions (list of objects) 1 + type 1, rounded up
DEFINITION_BY_TYPE_COST = 5.0

LIST_METAOBJECTS = """
query Metaobjects($type: String!, $first: Int!, $after: String) {
  metaobjects(type: $type, first: $first, after: $after) {
    nodes {
      id
      handle
      updatedAt
      sync_hash: field(key: "sync_hash") { value }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""
LIST_PAGE_SIZE = 250  # Shopify's maximum for `first`
LIST_NODE_COST = 2.0  # a listed metaobject: the node 1 + its sync_hash field object 1


def list_cost(first: int) -> float:
    """connection 2 + first x (node 1 + field object 1) + pageInfo 1."""
    return 3.0 + LIST_NODE_COST * first


METAOBJECTS_COUNT = (
    "query MetaobjectsCount($type: String!) {\n"
    "  metaobjectDefinitionByType(type: $type) { metaobjectsCount }\n}"
)
METAOBJECTS_COUNT_COST = 1.0  # the definition object; the count is a scalar


def bulk_list_query(metaobject_type: str) -> str:
    """The bulk query reading what LIST_METAOBJECTS reads, every metaobject of the type at once (bulk queries take
    no variables and no `first`). The result file holds one JSON object per metaobject, keyed as selected."""
    return (
        f"{{ metaobjects(type: {json.dumps(metaobject_type)}) {{ edges {{ node {{ "
        'id handle updatedAt sync_hash: field(key: "sync_hash") { value } } } } }'
    )


USER_ERRORS = "userErrors { field message code }"

UPSERT_ITEM_COST = 12.0  # mutation 10 + metaobject 1 + userErrors 1
DELETE_ITEM_COST = 11.0  # mutation 10 + userErrors 1
MAX_ITEMS_PER_DOCUMENT = 25


def upsert_document(count: int) -> str:
    """`count` aliased metaobjectUpserts (u0, u1, ...) with variables $h<i> (handle input) and $m<i> (input)."""
    params = ", ".join(f"$h{i}: MetaobjectHandleInput!, $m{i}: MetaobjectUpsertInput!" for i in range(count))
    body = "\n".join(
        f"  u{i}: metaobjectUpsert(handle: $h{i}, metaobject: $m{i}) {{ metaobject {{ id handle }} {USER_ERRORS} }}"
        for i in range(count)
    )
    return f"mutation UpsertMetaobjects({params}) {{\n{body}\n}}"


def delete_document(count: int) -> str:
    """`count` aliased metaobjectDeletes (d0, d1, ...) with variables $id<i>."""
    params = ", ".join(f"$id{i}: ID!" for i in range(count))
    body = "\n".join(
        f"  d{i}: metaobjectDelete(id: $id{i}) {{ deletedId {USER_ERRORS} }}" for i in range(count)
    )
    return f"mutation DeleteMetaobjects({params}) {{\n{body}\n}}"


CREATE_DEFINITION = (
    "mutation CreateMetaobjectDefinition($definition: MetaobjectDefinitionCreateInput!) {\n"
    "  metaobjectDefinitionCreate(definition: $definition) {\n"
    "    metaobjectDefinition {" + DEFINITION_FIELDS + "    }\n"
    "    " + USER_ERRORS + "\n  }\n}"
)
UPDATE_DEFINITION = (
    "mutation UpdateMetaobjectDefinition($id: ID!, $definition: MetaobjectDefinitionUpdateInput!) {\n"
    "  metaobjectDefinitionUpdate(id: $id, definition: $definition) {\n"
    "    metaobjectDefinition {" + DEFINITION_FIELDS + "    }\n"
    "    " + USER_ERRORS + "\n  }\n}"
)
DEFINITION_MUTATION_COST = 15.0

# ---------------------------------------------------------------- bulk
STAGED_UPLOADS_CREATE = """
mutation StagedUploadsCreate($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}
"""
BULK_RUN_MUTATION = """
mutation BulkOperationRunMutation($mutation: String!, $stagedUploadPath: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $stagedUploadPath) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
BULK_RUN_QUERY = """
mutation BulkOperationRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
BULK_OPERATION = """
query BulkOperation($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl }
}
"""
BULK_CANCEL = """
mutation BulkOperationCancel($id: ID!) {
  bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } }
}
"""
# The mutation each JSONL line runs: one line = {"handle": {...}, "metaobject": {...}}.
BULK_UPSERT_MUTATION = (
    "mutation call($handle: MetaobjectHandleInput!, $metaobject: MetaobjectUpsertInput!) { "
    "metaobjectUpsert(handle: $handle, metaobject: $metaobject) { metaobject { id handle } " + USER_ERRORS + " } }"
)
BULK_SETUP_COST = 15.0
