package catalog_test

import "testing"

func TestLogiSenseEventsFireAsLogiSenseSays(t *testing.T) {
	loadBuiltin(t).run(t, logiSenseCases())
}

func logiSenseCases() []entryCases {
	service := map[string]any{"id": "svc-1", "accountId": "acc-1", "name": "Fibre 1G", "status": "preactive"}
	account := map[string]any{"id": "acc-1", "name": "Acme Ltd", "status": "active"}
	billRun := map[string]any{"id": "br-2026-05", "status": "pending", "periodStart": t0, "periodEnd": t0.AddDate(0, 1, 0)}
	invoice := map[string]any{"id": "inv-1", "accountId": "acc-1", "status": "draft", "amount": 120.0, "dueDate": t0.AddDate(0, 0, 30)}
	refund := map[string]any{"id": "ref-1", "accountId": "acc-1", "amount": 25.0, "status": "pending"}
	credit := map[string]any{"id": "crd-1", "accountId": "acc-1", "amount": 10.0, "status": "pending", "reason": "outage"}
	pkg := map[string]any{"id": "pkg-1", "accountId": "acc-1", "name": "Business Bundle", "status": "active"}
	bucket := func(remaining float64) map[string]any {
		return map[string]any{"id": "bkt-1", "accountId": "acc-1", "unit": "MB", "total": 500.0, "used": 500 - remaining, "remaining": remaining}
	}

	// A tier is its name and its state; a contract holds them by name.
	type tierState struct {
		name  string
		state map[string]any
	}
	tier := func(name string, commit, used float64, closed bool) tierState {
		return tierState{name, map[string]any{"commitAmount": commit, "usedAmount": used, "closed": closed}}
	}
	contract := func(tiers ...tierState) map[string]any {
		byName := map[string]any{}
		for _, t := range tiers {
			byName[t.name] = t.state
		}
		return map[string]any{"id": "ctr-1", "accountId": "acc-1", "status": "active", "commitTiers": byName}
	}
	q1Open, q1Under, q1Met := tier("Q1", 1000, 800, false), tier("Q1", 1000, 800, true), tier("Q1", 1000, 1200, true)
	q2Open, q2Under := tier("Q2", 500, 100, false), tier("Q2", 500, 100, true)

	return []entryCases{
		{entry: "ServiceStateTransition", cases: []sample{
			{name: "preactive to active", op: "UPDATE", old: service, new: with(service, "status", "active"), fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "preactive", "newState": "active"}},
			{name: "active to suspended", op: "UPDATE", old: with(service, "status", "active"), new: with(service, "status", "suspended"), fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "active", "newState": "suspended"}},
			{name: "a change that keeps the state", op: "UPDATE", old: service, new: with(service, "name", "Fibre 2G")},
			{name: "a service is created", op: "CREATE", new: service},
		}},
		{entry: "ServiceStateTransition", params: map[string]any{"fromState": "active", "toState": "suspended"}, cases: []sample{
			{name: "active to suspended", op: "UPDATE", old: with(service, "status", "active"), new: with(service, "status", "suspended"), fire: true},
			{name: "preactive to active", op: "UPDATE", old: service, new: with(service, "status", "active")},
			{name: "suspended to active", op: "UPDATE", old: with(service, "status", "suspended"), new: with(service, "status", "active")},
			{name: "preactive to suspended", op: "UPDATE", old: service, new: with(service, "status", "suspended")},
		}},
		{entry: "AccountStatusChange", cases: []sample{
			{name: "active to suspended", op: "UPDATE", old: account, new: with(account, "status", "suspended"), fire: true,
				fields: map[string]any{"priorStatus": "active", "newStatus": "suspended"}},
			{name: "active to cancelled", op: "UPDATE", old: account, new: with(account, "status", "cancelled"), fire: true},
			{name: "the balance changes", op: "UPDATE", old: account, new: with(account, "balance", 3.0)},
		}},
		{entry: "AccountCancellation", cases: []sample{
			{name: "an account is cancelled", op: "UPDATE", old: account, new: with(account, "status", "cancelled", "cancelledAt", t0), fire: true},
			{name: "a suspended account is cancelled", op: "UPDATE", old: with(account, "status", "suspended"), new: with(account, "status", "cancelled"), fire: true},
			{name: "a cancelled account changes", op: "UPDATE", old: with(account, "status", "cancelled"), new: with(account, "status", "cancelled", "name", "x")},
			{name: "an account is suspended", op: "UPDATE", old: account, new: with(account, "status", "suspended")},
		}},
		{entry: "BillRunStarted", cases: []sample{
			{name: "a pending run starts", op: "UPDATE", old: billRun, new: with(billRun, "status", "running", "startedAt", t0), fire: true},
			{name: "a run is created running", op: "CREATE", new: with(billRun, "status", "running"), fire: true},
			{name: "a run is created pending", op: "CREATE", new: billRun},
			{name: "a running run makes progress", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "running", "invoiceCount", int64(40))},
			{name: "a run completes", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "completed")},
		}},
		{entry: "BillRunCompleted", cases: []sample{
			{name: "a run completes", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "completed", "completedAt", t0), fire: true},
			{name: "a run fails", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "failed")},
			{name: "a completed run changes", op: "UPDATE", old: with(billRun, "status", "completed"), new: with(billRun, "status", "completed", "invoiceCount", int64(41))},
		}},
		{entry: "InvoicePosted", cases: []sample{
			{name: "a draft is posted", op: "UPDATE", old: invoice, new: with(invoice, "status", "posted", "postedAt", t0), fire: true},
			{name: "an invoice is created posted", op: "CREATE", new: with(invoice, "status", "posted", "postedAt", t0), fire: true},
			{name: "a draft is created", op: "CREATE", new: invoice},
			{name: "a posted invoice is paid", op: "UPDATE", old: with(invoice, "status", "posted", "postedAt", t0), new: with(invoice, "status", "paid", "postedAt", t0, "paidAt", t0)},
		}},
		{entry: "InvoiceDelivery", cases: []sample{
			{name: "a posted invoice is delivered", op: "UPDATE", old: with(invoice, "postedAt", t0), new: with(invoice, "postedAt", t0, "deliveredAt", t0), fire: true},
			{name: "an invoice is created delivered", op: "CREATE", new: with(invoice, "deliveredAt", t0), fire: true},
			{name: "an invoice is posted", op: "UPDATE", old: invoice, new: with(invoice, "postedAt", t0)},
			{name: "a delivered invoice is paid", op: "UPDATE", old: with(invoice, "deliveredAt", t0), new: with(invoice, "deliveredAt", t0, "paidAt", t0)},
		}},
		{entry: "Refund", cases: []sample{
			{name: "a refund is processed", op: "UPDATE", old: refund, new: with(refund, "status", "processed", "processedAt", t0), fire: true},
			{name: "a refund is created processed", op: "CREATE", new: with(refund, "status", "processed"), fire: true},
			{name: "a refund is requested", op: "CREATE", new: refund},
			{name: "a refund fails", op: "UPDATE", old: refund, new: with(refund, "status", "failed")},
			{name: "a processed refund changes", op: "UPDATE", old: with(refund, "status", "processed"), new: with(refund, "status", "processed", "reason", "x")},
		}},
		{entry: "CreditProcessed", cases: []sample{
			{name: "a credit is processed", op: "UPDATE", old: credit, new: with(credit, "status", "processed"), fire: true},
			{name: "a credit is created processed", op: "CREATE", new: with(credit, "status", "processed"), fire: true},
			{name: "a credit is voided", op: "UPDATE", old: credit, new: with(credit, "status", "void")},
			{name: "a processed credit changes", op: "UPDATE", old: with(credit, "status", "processed"), new: with(credit, "status", "processed", "reason", "x")},
		}},
		{entry: "ContractUnderCommit", cases: []sample{
			{name: "a tier closes under its commitment", op: "UPDATE", old: contract(q1Open, q2Open), new: contract(q1Under, q2Open), fire: true,
				fields: map[string]any{"tiers": []any{map[string]any{"tier": "Q1", "commitAmount": 1000, "usedAmount": 800, "shortfall": 200}}}},
			{name: "a contract arrives with a tier closed under", op: "CREATE", new: contract(q1Under, q2Open), fire: true},
			{name: "a second tier closes under", op: "UPDATE", old: contract(q1Under, q2Open), new: contract(q1Under, q2Under), fire: true,
				fields: map[string]any{"tiers": []any{map[string]any{"tier": "Q2", "commitAmount": 500, "usedAmount": 100, "shortfall": 400}}}},
			{name: "a tier closes having met its commitment", op: "UPDATE", old: contract(q1Open), new: contract(q1Met)},
			{name: "an open tier is under its commitment", op: "UPDATE", old: contract(q1Open), new: contract(tier("Q1", 1000, 900, false))},
			{name: "the contract changes after a tier closed under", op: "UPDATE", old: contract(q1Under), new: with(contract(q1Under), "name", "x")},
			{name: "a tier is added to a contract with one closed under", op: "UPDATE", old: contract(q1Under), new: contract(q1Under, q2Open)},
			{name: "a contract without tiers", op: "UPDATE", old: contract(), new: with(contract(), "status", "ended")},
		}},
		{entry: "ContractUnderCommit", params: map[string]any{"tier": "Q2"}, cases: []sample{
			{name: "the tier closes under", op: "UPDATE", old: contract(q1Under, q2Open), new: contract(q1Under, q2Under), fire: true,
				fields: map[string]any{"tiers": []any{map[string]any{"tier": "Q2", "commitAmount": 500, "usedAmount": 100, "shortfall": 400}}}},
			{name: "another tier closes under", op: "UPDATE", old: contract(q1Open, q2Open), new: contract(q1Under, q2Open)},
		}},
		{entry: "PackageCancellation", cases: []sample{
			{name: "a package is cancelled", op: "UPDATE", old: pkg, new: with(pkg, "status", "cancelled", "cancelledAt", t0), fire: true},
			{name: "a package is suspended", op: "UPDATE", old: pkg, new: with(pkg, "status", "suspended")},
			{name: "a cancelled package changes", op: "UPDATE", old: with(pkg, "status", "cancelled"), new: with(pkg, "status", "cancelled", "name", "x")},
			{name: "a package is deleted", op: "DELETE", old: pkg},
		}},
		{entry: "UsageThresholdExceeded", cases: []sample{
			{name: "the bucket is used up", op: "UPDATE", old: bucket(10), new: bucket(0), fire: true},
			{name: "usage overshoots the bucket", op: "UPDATE", old: bucket(10), new: bucket(-4), fire: true},
			{name: "usage continues on a used-up bucket", op: "UPDATE", old: bucket(0), new: bucket(-1)},
			{name: "usage leaves some", op: "UPDATE", old: bucket(100), new: bucket(10)},
		}},
	}
}
