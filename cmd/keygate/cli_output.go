package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// printJSON prints m in the proto3 JSON mapping, indented the same way on
// every run: protojson varies its spacing on purpose, json.Indent drops it.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(w)
	return err
}

func formatTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// printFields prints label/value pairs aligned in two columns.
func printFields(w io.Writer, pairs ...string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], pairs[i+1])
	}
	tw.Flush()
}

// printTable prints a header row and rows, aligned.
func printTable(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func printNextPage(w io.Writer, token string) {
	if token != "" {
		fmt.Fprintf(w, "\nMore: --page-token %s\n", token)
	}
}

func printAccount(w io.Writer, m proto.Message) {
	a := m.(*adminv1.Account)
	printFields(w,
		"ID", a.GetId(),
		"Name", a.GetName(),
		"Balance", fmt.Sprint(a.GetBalance()),
		"Status", a.GetStatus(),
		"Created", formatTime(a.GetCreateTime()),
		"Updated", formatTime(a.GetUpdateTime()))
}

func printAccounts(w io.Writer, m proto.Message) {
	r := m.(*adminv1.ListAccountsResponse)
	rows := make([][]string, 0, len(r.GetAccounts()))
	for _, a := range r.GetAccounts() {
		rows = append(rows, []string{a.GetId(), a.GetName(), fmt.Sprint(a.GetBalance()), a.GetStatus(), formatTime(a.GetCreateTime())})
	}
	printTable(w, []string{"ID", "NAME", "BALANCE", "STATUS", "CREATED"}, rows)
	printNextPage(w, r.GetNextPageToken())
}

func printLedgerEntry(w io.Writer, m proto.Message) {
	e := m.(*adminv1.LedgerEntry)
	printFields(w,
		"Account", e.GetAccountId(),
		"Entry", fmt.Sprintf("#%d %s %d", e.GetSeq(), e.GetKind(), e.GetAmount()),
		"Balance", fmt.Sprint(e.GetBalanceAfter()),
		"Idempotency key", orDash(e.GetIdempotencyKey()),
		"Key", orDash(e.GetKeyId()),
		"Time", formatTime(e.GetCreateTime()))
}

func printLedger(w io.Writer, m proto.Message) {
	r := m.(*adminv1.ListLedgerResponse)
	rows := make([][]string, 0, len(r.GetEntries()))
	for _, e := range r.GetEntries() {
		rows = append(rows, []string{fmt.Sprint(e.GetSeq()), e.GetKind(), fmt.Sprint(e.GetAmount()), fmt.Sprint(e.GetBalanceAfter()),
			orDash(e.GetKeyId()), orDash(e.GetIdempotencyKey()), formatTime(e.GetCreateTime())})
	}
	printTable(w, []string{"SEQ", "KIND", "AMOUNT", "BALANCE", "KEY", "IDEMPOTENCY KEY", "TIME"}, rows)
	printNextPage(w, r.GetNextPageToken())
}

func printKey(w io.Writer, k *adminv1.Key) {
	printFields(w,
		"ID", k.GetId(),
		"Account", k.GetAccountId(),
		"Name", k.GetName(),
		"Hint", k.GetHint(),
		"State", k.GetState(),
		"Created", formatTime(k.GetCreateTime()),
		"Expires", formatTime(k.GetExpireTime()),
		"Revoked", formatTime(k.GetRevokeTime()),
		"Last used", formatTime(k.GetLastUsedTime()),
		"Replaced by", orDash(k.GetReplacedBy()))
}

func printKeys(w io.Writer, m proto.Message) {
	r := m.(*adminv1.ListKeysResponse)
	rows := make([][]string, 0, len(r.GetKeys()))
	for _, k := range r.GetKeys() {
		rows = append(rows, []string{k.GetId(), k.GetName(), k.GetHint(), k.GetState(), formatTime(k.GetExpireTime()), formatTime(k.GetLastUsedTime())})
	}
	printTable(w, []string{"ID", "NAME", "HINT", "STATE", "EXPIRES", "LAST USED"}, rows)
	printNextPage(w, r.GetNextPageToken())
}

// printSecret shows a new key and its secret, which is never shown again.
func printSecret(w io.Writer, k *adminv1.Key, secret string) {
	printKey(w, k)
	fmt.Fprintf(w, "\nSecret (shown only this once; store it now):\n\n    %s\n\n", secret)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
