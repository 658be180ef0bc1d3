package catalog_test

import "testing"

func TestLogiSenseEventsFireAsLogiSenseSays(t *testing.T) {
	loadBuiltin(t).run(t, logiSenseCases())
}

func logiSenseCases() []entryCases {
	// Each fixture holds only what its schema requires; samples add the
	// optional fields they need.
	service := map[string]any{"id": "svc-1", "accountId": "acc-1", "name": "Fibre 1G", "status": "preactive"}
	account := map[string]any{"id": "acc-1", "status": "active"}
	billRun := map[string]any{"id": "br-2026-05", "status": "pending"}
	invoice := map[string]any{"id": "inv-1", "accountId": "acc-1", "status": "draft", "amount": 120.0}
	refund := map[string]any{"id": "ref-1", "accountId": "acc-1", "amount": 25.0, "status": "pending"}
	credit := map[string]any{"id": "crd-1", "accountId": "acc-1", "amount": 10.0, "status": "pending"}
	pkg := map[string]any{"id": "pkg-1", "accountId": "acc-1", "name": "Business Bundle", "status": "active"}

	bucket := func(remaining float64) map[string]any {
		return map[string]any{"id": "bkt-1", "accountId": "acc-1", "unit": "MB", "kind": "allowance",
			"total": 500.0, "used": 500 - remaining, "remaining": remaining}
	}
	// tiered is a bucket used tier by tier: 100 MB in tier1, then 400 MB
	// in tier2, with used MB used so far.
	tiered := func(used float64) map[string]any {
		t1 := min(used, 100)
		t2 := used - t1
		return with(bucket(500-used), "tiers", map[string]any{
			"tier1": map[string]any{"total": 100.0, "used": t1, "remaining": 100 - t1},
			"tier2": map[string]any{"total": 400.0, "used": t2, "remaining": 400 - t2},
		})
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
	// committed is a contract with an overall commitment of 1500.
	committed := func(status string, used float64, tiers ...tierState) map[string]any {
		return with(contract(tiers...), "status", status, "commitAmount", 1500.0, "usedAmount", used)
	}
	q1Open, q1Under, q1Met := tier("Q1", 1000, 800, false), tier("Q1", 1000, 800, true), tier("Q1", 1000, 1200, true)
	q2Open, q2Under := tier("Q2", 500, 100, false), tier("Q2", 500, 100, true)
	q1Exact := tier("Q1", 1000, 1000, true)
	q1UnderRow := map[string]any{"tier": "Q1", "commitAmount": 1000, "usedAmount": 800, "shortfall": 200}
	q2UnderRow := map[string]any{"tier": "Q2", "commitAmount": 500, "usedAmount": 100, "shortfall": 400}
	noTiers := []any{}

	return []entryCases{
		{entry: "ServiceStateTransition", cases: []sample{
			{name: "preactive to active", op: "UPDATE", old: service, new: with(service, "status", "active"), sparse: true, fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "preactive", "newState": "active"}},
			{name: "active to suspended", op: "UPDATE", old: with(service, "status", "active"), new: with(service, "status", "suspended"), fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "active", "newState": "suspended"}},
			{name: "a change that keeps the state", op: "UPDATE", old: service, new: with(service, "name", "Fibre 2G"),
				excludes: "a change that keeps the state"},
			{name: "a service is created", op: "CREATE", new: service, unwatched: true, whenHolds: true},
		}},
		{entry: "ServiceStateTransition", params: map[string]any{"fromState": "Active", "toState": "Suspended"}, cases: []sample{
			{name: "active to suspended", op: "UPDATE", old: with(service, "status", "active"), new: with(service, "status", "suspended"), fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "active", "newState": "suspended"}},
			{name: "Active to Suspended, as LogiSense writes them", op: "UPDATE", old: with(service, "status", "Active"), new: with(service, "status", "Suspended"),
				fire: true, fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "Active", "newState": "Suspended"}},
			{name: "preactive to active", op: "UPDATE", old: service, new: with(service, "status", "active")},
			{name: "suspended to active", op: "UPDATE", old: with(service, "status", "suspended"), new: with(service, "status", "active")},
			{name: "preactive to suspended", op: "UPDATE", old: service, new: with(service, "status", "suspended")},
			{name: "an active service is deleted", op: "DELETE", old: with(service, "status", "active"), unwatched: true},
		}},
		{entry: "ServiceStateTransition", params: map[string]any{"toState": "act.ve"}, cases: []sample{
			{name: "a state that is the parameter's text", op: "UPDATE", old: with(service, "status", "x"), new: with(service, "status", "act.ve"), fire: true,
				fields: map[string]any{"serviceName": "Fibre 1G", "priorState": "x", "newState": "act.ve"}},
			{name: "a state the parameter would match as a pattern", op: "UPDATE", old: service, new: with(service, "status", "active")},
		}},
		{entry: "AccountStatusChange", cases: []sample{
			{name: "active to suspended", op: "UPDATE", old: account, new: with(account, "status", "suspended"), sparse: true, fire: true,
				fields: map[string]any{"priorStatus": "active", "newStatus": "suspended"}},
			{name: "active to cancelled", op: "UPDATE", old: account, new: with(account, "status", "cancelled", "cancelledAt", t0), fire: true,
				fields: map[string]any{"priorStatus": "active", "newStatus": "cancelled"}},
			{name: "the balance changes", op: "UPDATE", old: account, new: with(account, "balance", 3.0), excludes: "a change that keeps the status"},
			{name: "an account is deleted", op: "DELETE", old: account, unwatched: true, whenHolds: true},
		}},
		{entry: "AccountCancellation", cases: []sample{
			{name: "an account is cancelled", op: "UPDATE", old: account, new: with(account, "status", "cancelled", "cancelledAt", t0), fire: true},
			{name: "a suspended account is cancelled", op: "UPDATE", old: with(account, "status", "suspended"), new: with(account, "status", "cancelled"),
				sparse: true, fire: true},
			{name: "a cancelled account changes", op: "UPDATE", old: with(account, "status", "cancelled"), new: with(account, "status", "cancelled", "name", "x"),
				excludes: "an account already cancelled"},
			{name: "an account is suspended", op: "UPDATE", old: account, new: with(account, "status", "suspended")},
			{name: "an account is created cancelled", op: "CREATE", new: with(account, "status", "cancelled"), unwatched: true, whenHolds: true},
		}},
		{entry: "BillRunStarted", cases: []sample{
			{name: "a pending run starts", op: "UPDATE", old: billRun, new: with(billRun, "status", "running", "startedAt", t0), fire: true},
			{name: "a run is created running", op: "CREATE", new: with(billRun, "status", "running"), sparse: true, fire: true},
			{name: "a run is created pending", op: "CREATE", new: billRun, excludes: "a run created pending, until it runs"},
			{name: "a running run makes progress", op: "UPDATE", old: with(billRun, "status", "running"),
				new: with(billRun, "status", "running", "invoiceCount", int64(40)), excludes: "a run already running"},
			{name: "a run completes", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "completed")},
			{name: "a running run is deleted", op: "DELETE", old: with(billRun, "status", "running"), unwatched: true},
		}},
		{entry: "BillRunCompleted", cases: []sample{
			{name: "a run completes", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "completed", "completedAt", t0), fire: true},
			{name: "a run is recorded completed", op: "CREATE", new: with(billRun, "status", "completed"), sparse: true, fire: true},
			{name: "a run fails", op: "UPDATE", old: with(billRun, "status", "running"), new: with(billRun, "status", "failed"), excludes: "a run that fails"},
			{name: "a completed run changes", op: "UPDATE", old: with(billRun, "status", "completed"),
				new: with(billRun, "status", "completed", "invoiceCount", int64(41)), excludes: "a run already completed"},
			{name: "a completed run is deleted", op: "DELETE", old: with(billRun, "status", "completed"), unwatched: true},
		}},
		{entry: "InvoicePosted", cases: []sample{
			{name: "a draft is posted", op: "UPDATE", old: invoice, new: with(invoice, "status", "posted", "postedAt", t0), fire: true},
			{name: "an invoice is created posted", op: "CREATE", new: with(invoice, "status", "posted", "postedAt", t0), fire: true},
			{name: "a draft is created", op: "CREATE", new: invoice, sparse: true, excludes: "a draft"},
			{name: "a posted invoice is paid", op: "UPDATE", old: with(invoice, "status", "posted", "postedAt", t0),
				new: with(invoice, "status", "paid", "postedAt", t0, "paidAt", t0), excludes: "an invoice already posted"},
			{name: "a posted invoice is deleted", op: "DELETE", old: with(invoice, "postedAt", t0), unwatched: true},
		}},
		{entry: "InvoiceDelivery", cases: []sample{
			{name: "a posted invoice is delivered", op: "UPDATE", old: with(invoice, "postedAt", t0), new: with(invoice, "postedAt", t0, "deliveredAt", t0), fire: true},
			{name: "an invoice is created delivered", op: "CREATE", new: with(invoice, "deliveredAt", t0), fire: true},
			{name: "an invoice is posted", op: "UPDATE", old: invoice, new: with(invoice, "postedAt", t0), excludes: "an invoice posted but not delivered"},
			{name: "a delivered invoice is paid", op: "UPDATE", old: with(invoice, "deliveredAt", t0), new: with(invoice, "deliveredAt", t0, "paidAt", t0),
				excludes: "an invoice already delivered"},
			{name: "a draft changes", op: "UPDATE", old: invoice, new: with(invoice, "amount", 130.0), sparse: true},
			{name: "a delivered invoice is deleted", op: "DELETE", old: with(invoice, "deliveredAt", t0), unwatched: true},
		}},
		{entry: "Refund", cases: []sample{
			{name: "a refund is processed", op: "UPDATE", old: refund, new: with(refund, "status", "processed", "processedAt", t0), fire: true},
			{name: "a refund is created processed", op: "CREATE", new: with(refund, "status", "processed"), sparse: true, fire: true},
			{name: "a refund is requested", op: "CREATE", new: refund},
			{name: "a refund fails", op: "UPDATE", old: refund, new: with(refund, "status", "failed"), excludes: "a refund that fails"},
			{name: "a processed refund changes", op: "UPDATE", old: with(refund, "status", "processed"), new: with(refund, "status", "processed", "reason", "x"),
				excludes: "a refund already processed"},
			{name: "a processed refund is deleted", op: "DELETE", old: with(refund, "status", "processed"), unwatched: true},
		}},
		{entry: "CreditProcessed", cases: []sample{
			{name: "a credit is processed", op: "UPDATE", old: credit, new: with(credit, "status", "processed", "reason", "outage"), fire: true},
			{name: "a credit is created processed", op: "CREATE", new: with(credit, "status", "processed"), sparse: true, fire: true},
			{name: "a credit is voided", op: "UPDATE", old: credit, new: with(credit, "status", "void"), excludes: "a credit voided"},
			{name: "a processed credit changes", op: "UPDATE", old: with(credit, "status", "processed"), new: with(credit, "status", "processed", "reason", "x"),
				excludes: "a credit already processed"},
			{name: "a processed credit is deleted", op: "DELETE", old: with(credit, "status", "processed"), unwatched: true},
		}},
		{entry: "ContractUnderCommit", cases: []sample{
			{name: "the contract ends under its commitment", op: "UPDATE", old: committed("active", 1200, q1Open, q2Open), new: committed("ended", 1200, q1Under, q2Open),
				fire: true, fields: map[string]any{"contract": map[string]any{"commitAmount": 1500, "usedAmount": 1200, "shortfall": 300}, "tiers": noTiers}},
			{name: "the contract ends under, its tiers met", op: "UPDATE", old: committed("active", 1400, q1Met), new: committed("ended", 1400, q1Met),
				fire: true, fields: map[string]any{"contract": map[string]any{"commitAmount": 1500, "usedAmount": 1400, "shortfall": 100}, "tiers": noTiers}},
			{name: "a contract arrives ended under", op: "CREATE", new: committed("ended", 0), fire: true,
				fields: map[string]any{"contract": map[string]any{"commitAmount": 1500, "usedAmount": 0, "shortfall": 1500}, "tiers": noTiers}},
			{name: "the contract ends having used its commitment exactly", op: "UPDATE", old: committed("active", 1500), new: committed("ended", 1500),
				edge: true, excludes: "a contract that meets its commitment (used equal to committed meets it)"},
			{name: "the contract ends over its commitment, a tier under", op: "UPDATE", old: committed("active", 1600, q1Open), new: committed("ended", 1600, q1Under),
				excludes: "a contract that meets its commitment (used equal to committed meets it)"},
			{name: "a contract under its commitment is cancelled", op: "UPDATE", old: committed("active", 200), new: committed("cancelled", 200),
				excludes: "a cancelled contract"},
			{name: "a contract without an overall commitment ends", op: "UPDATE", old: contract(q1Under), new: with(contract(q1Under), "status", "ended"),
				excludes: "a contract without an overall commitment (commitAmount)"},
			{name: "a tier closes under its commitment", op: "UPDATE", old: committed("active", 800, q1Open), new: committed("active", 800, q1Under),
				excludes: "without perTier, a tier that closes under"},
			{name: "an ended contract changes", op: "UPDATE", old: committed("ended", 1200), new: with(committed("ended", 1200), "name", "x")},
			{name: "the contract's usage grows", op: "UPDATE", old: committed("active", 100), new: committed("active", 900)},
			{name: "a contract with only its required fields ends", op: "UPDATE",
				old: map[string]any{"id": "ctr-2", "accountId": "acc-1", "status": "active"}, new: map[string]any{"id": "ctr-2", "accountId": "acc-1", "status": "ended"},
				sparse: true},
			{name: "written by a producer still on Contract v1", op: "UPDATE", old: contract(q1Open), new: with(contract(q1Under), "status", "ended"), writer: 1},
			{name: "an ended contract is deleted", op: "DELETE", old: committed("ended", 100), unwatched: true},
		}},
		{entry: "ContractUnderCommit", params: map[string]any{"perTier": true}, cases: []sample{
			{name: "a tier closes under its commitment", op: "UPDATE", old: contract(q1Open, q2Open), new: contract(q1Under, q2Open), fire: true,
				fields: map[string]any{"contract": nil, "tiers": []any{q1UnderRow}}},
			{name: "a contract arrives with a tier closed under", op: "CREATE", new: contract(q1Under, q2Open), fire: true,
				fields: map[string]any{"contract": nil, "tiers": []any{q1UnderRow}}},
			{name: "a second tier closes under", op: "UPDATE", old: contract(q1Under, q2Open), new: contract(q1Under, q2Under), fire: true,
				fields: map[string]any{"contract": nil, "tiers": []any{q2UnderRow}}},
			{name: "a tier closes under, its contract's total met", op: "UPDATE", old: committed("active", 1600, q1Open), new: committed("active", 1600, q1Under),
				fire: true, fields: map[string]any{"contract": nil, "tiers": []any{q1UnderRow}}},
			{name: "the last tier closes under as the contract ends under", op: "UPDATE",
				old: committed("active", 900, q1Met, q2Open), new: committed("ended", 900, q1Met, q2Under), fire: true,
				fields: map[string]any{"contract": map[string]any{"commitAmount": 1500, "usedAmount": 900, "shortfall": 600}, "tiers": []any{q2UnderRow}}},
			{name: "the contract ends under, no tier closing", op: "UPDATE", old: committed("active", 1200, q1Met), new: committed("ended", 1200, q1Met),
				fire: true, fields: map[string]any{"contract": map[string]any{"commitAmount": 1500, "usedAmount": 1200, "shortfall": 300}, "tiers": noTiers}},
			{name: "a tier closes having used its commitment exactly", op: "UPDATE", old: contract(q1Open), new: contract(q1Exact), edge: true},
			{name: "a tier closes having met its commitment", op: "UPDATE", old: contract(q1Open), new: contract(q1Met)},
			{name: "an open tier is under its commitment", op: "UPDATE", old: contract(q1Open), new: contract(tier("Q1", 1000, 900, false))},
			{name: "the contract changes after a tier closed under", op: "UPDATE", old: contract(q1Under), new: with(contract(q1Under), "name", "x")},
			{name: "a tier is added to a contract with one closed under", op: "UPDATE", old: contract(q1Under), new: contract(q1Under, q2Open)},
			{name: "a contract without tiers", op: "UPDATE", old: contract(), new: with(contract(), "status", "suspended")},
			{name: "a contract with only its required fields changes", op: "UPDATE",
				old: map[string]any{"id": "ctr-2", "accountId": "acc-1", "status": "active"}, new: map[string]any{"id": "ctr-2", "accountId": "acc-1", "status": "x"},
				sparse: true},
		}},
		{entry: "PackageCancellation", cases: []sample{
			{name: "a package is cancelled", op: "UPDATE", old: pkg, new: with(pkg, "status", "cancelled", "cancelledAt", t0), fire: true},
			{name: "a package with only its required fields is cancelled", op: "UPDATE", old: pkg, new: with(pkg, "status", "cancelled"), sparse: true, fire: true},
			{name: "a package is suspended", op: "UPDATE", old: pkg, new: with(pkg, "status", "suspended")},
			{name: "a cancelled package changes", op: "UPDATE", old: with(pkg, "status", "cancelled"), new: with(pkg, "status", "cancelled", "name", "x"),
				excludes: "a package already cancelled"},
			{name: "a package is deleted", op: "DELETE", old: pkg, unwatched: true, excludes: "a package deleted"},
		}},
		{entry: "UsageThresholdExceeded", cases: []sample{
			{name: "the bucket is used up", op: "UPDATE", old: bucket(10), new: bucket(0), edge: true, fire: true, fields: map[string]any{"tiers": noTiers}},
			{name: "usage overshoots the bucket", op: "UPDATE", old: bucket(10), new: bucket(-4), fire: true, fields: map[string]any{"tiers": noTiers}},
			{name: "the first tier is used up", op: "UPDATE", old: tiered(90), new: tiered(100), edge: true, fire: true,
				fields: map[string]any{"tiers": []any{"tier1"}}},
			{name: "usage runs through the first tier into the second", op: "UPDATE", old: tiered(50), new: tiered(150), fire: true,
				fields: map[string]any{"tiers": []any{"tier1"}}},
			{name: "the last tier is used up", op: "UPDATE", old: tiered(450), new: tiered(500), fire: true,
				fields: map[string]any{"tiers": []any{"tier2"}}},
			{name: "usage within the second tier", op: "UPDATE", old: tiered(150), new: tiered(300), excludes: "a bucket or tier already used up"},
			{name: "usage continues on a used-up bucket", op: "UPDATE", old: bucket(0), new: bucket(-1), excludes: "a bucket or tier already used up"},
			{name: "a tiered bucket's balance reaches zero with its last tier", op: "UPDATE",
				old: with(tiered(450), "remaining", 1.0, "used", 499.0), new: with(tiered(450), "remaining", 0.0, "used", 500.0),
				excludes: "a tiered bucket's whole balance (its tiers fire)"},
			{name: "usage leaves some", op: "UPDATE", old: bucket(100), new: bucket(10)},
			{name: "a monetary balance reaches zero", op: "UPDATE", old: with(bucket(10), "unit", "USD", "kind", "monetary"),
				new: with(bucket(0), "unit", "USD", "kind", "monetary"), excludes: "monetary balances, and balances whose kind is not given"},
			{name: "a bucket that does not say its kind is used up", op: "UPDATE", old: with(bucket(10), "kind", nil), new: with(bucket(0), "kind", nil),
				sparse: true, excludes: "monetary balances, and balances whose kind is not given"},
			{name: "written by a producer still on Balance v1", op: "UPDATE", old: with(bucket(10), "kind", nil), new: with(bucket(0), "kind", nil), writer: 1,
				excludes: "monetary balances, and balances whose kind is not given"},
			{name: "a used-up bucket is created", op: "CREATE", new: bucket(0), unwatched: true},
		}},
	}
}
