// Package emailtemplate compiles a tenant's canned email
// (configstore.EmailTemplate) and renders it for a notification: the
// subject and the text body with text/template, the HTML body with
// html/template (so tokens are escaped), all over one Data value whose
// tokens read like {{.Notification.State}} or {{.Notification.Fields.planid}}.
//
// Compile checks a template the way the admin API needs when one is
// saved: it parses each part and runs it against a sample notification
// with missingkey=error, so a token naming a field a notification does not
// have is refused with its position. Fields, Old and New are maps whose
// keys depend on the rule and the entity: any key is accepted there, and
// a key a notification lacks renders empty. Render refuses a subject that
// would hold a line break, so no token can add a header to the message.
package emailtemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	htmltemplate "html/template"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// Data is what a template's tokens read.
type Data struct {
	Notification Notification
}

// Notification is a notification as templates see it.
type Notification struct {
	ID        string
	Name      string
	State     string
	PrevState string
	Threshold *float64
	TenantID  string
	RuleID    string
	CreatedAt time.Time
	Event     Event
	// Fields are the rule's computed fields; Old and New the entity before
	// and after the change.
	Fields map[string]any
	Old    map[string]any
	New    map[string]any
}

// Event is the event a notification came from.
type Event struct {
	ID            string
	EntityType    string
	EntityID      string
	Operation     string
	OccurredAt    time.Time
	AccountID     string
	DeviceID      string
	CorrelationID string
}

// NewData returns what a template reads of n.
func NewData(n *notification.Notification) Data {
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	image := func(p *string) map[string]any {
		m := map[string]any{}
		if p != nil {
			_ = json.Unmarshal([]byte(*p), &m)
		}
		return m
	}
	fields := make(map[string]any, len(n.Fields))
	for k, v := range n.Fields {
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			fields[k] = x
		}
	}
	return Data{Notification: Notification{
		ID: n.ID, Name: n.Name, State: n.State, PrevState: str(n.PrevState), Threshold: n.Threshold,
		TenantID: n.TenantID, RuleID: n.RuleID, CreatedAt: n.CreatedAt,
		Event: Event{ID: n.Event.ID, EntityType: n.Event.EntityType, EntityID: n.Event.EntityID, Operation: n.Event.Operation,
			OccurredAt: n.Event.OccurredAt, AccountID: str(n.Event.AccountID), DeviceID: str(n.Event.DeviceID),
			CorrelationID: str(n.Event.CorrelationID)},
		Fields: fields, Old: image(n.Old), New: image(n.New),
	}}
}

// Error is a problem with one part of a template; Field is its JSON name
// (subject, htmlBody, textBody).
type Error struct {
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ErrHeaderInjection is returned for a subject that renders with a line
// break.
var ErrHeaderInjection = errors.New("the subject holds a line break, which would start a new header")

// Template is a compiled email template.
type Template struct {
	subject, text *template.Template
	html          *htmltemplate.Template
	// keys are the map keys the parts name under Fields, Old and New, so
	// the save-time check can run them.
	keys map[string][]string
}

// Compile parses and checks t.
func Compile(t configstore.EmailTemplate) (*Template, error) {
	c := &Template{keys: map[string][]string{}}
	var err error
	if strings.TrimSpace(t.Subject) == "" {
		return nil, &Error{"subject", errors.New("required")}
	}
	if c.subject, err = parseText("subject", t.Subject); err != nil {
		return nil, &Error{"subject", err}
	}
	c.collect(c.subject.Tree)
	if t.TextBody != "" {
		if c.text, err = parseText("textBody", t.TextBody); err != nil {
			return nil, &Error{"textBody", err}
		}
		c.collect(c.text.Tree)
	}
	if t.HTMLBody != "" {
		if c.html, err = htmltemplate.New("htmlBody").Option("missingkey=error").Parse(t.HTMLBody); err != nil {
			return nil, &Error{"htmlBody", clean(err)}
		}
		c.collect(c.html.Tree)
	}
	if c.text == nil && c.html == nil {
		return nil, &Error{"textBody", errors.New("a text body, an HTML body or both are required")}
	}
	if _, err := c.render(c.sample()); err != nil {
		return nil, err
	}
	return c, nil
}

func parseText(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	return t, clean(err)
}

// clean drops the "template: " every template error starts with; the
// rest names the part, the line and the column.
func clean(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(err.Error(), "template: "))
}

// collect notes the keys a tree reads under .Notification.Fields, .Old and
// .New.
func (c *Template) collect(tree *parse.Tree) {
	if tree == nil {
		return
	}
	var walk func(parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, x := range n.Nodes {
					walk(x)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, cmd := range n.Cmds {
					for _, arg := range cmd.Args {
						walk(arg)
					}
				}
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.FieldNode:
			if len(n.Ident) >= 3 && n.Ident[0] == "Notification" {
				switch m := n.Ident[1]; m {
				case "Fields", "Old", "New":
					c.keys[m] = append(c.keys[m], n.Ident[2])
				}
			}
		}
	}
	walk(tree.Root)
}

// sample is a notification with every field set, and the map keys the
// template names.
func (c *Template) sample() Data {
	d := NewData(notification.Sample())
	for m, keys := range c.keys {
		target := map[string]map[string]any{"Fields": d.Notification.Fields, "Old": d.Notification.Old, "New": d.Notification.New}[m]
		for _, k := range keys {
			if _, ok := target[k]; !ok {
				target[k] = "sample"
			}
		}
	}
	return d
}

// Message is a rendered email.
type Message struct {
	Subject, Text, HTML string
}

// Render renders the template for n. A key n lacks renders empty.
func (c *Template) Render(n *notification.Notification) (Message, error) {
	d := NewData(n)
	for m, keys := range c.keys {
		target := map[string]map[string]any{"Fields": d.Notification.Fields, "Old": d.Notification.Old, "New": d.Notification.New}[m]
		for _, k := range keys {
			if _, ok := target[k]; !ok {
				target[k] = ""
			}
		}
	}
	return c.render(d)
}

func (c *Template) render(d Data) (Message, error) {
	var m Message
	var b bytes.Buffer
	if err := c.subject.Execute(&b, d); err != nil {
		return m, &Error{"subject", clean(err)}
	}
	m.Subject = strings.TrimSpace(b.String())
	if strings.ContainsAny(m.Subject, "\r\n") {
		return m, &Error{"subject", ErrHeaderInjection}
	}
	if c.text != nil {
		b.Reset()
		if err := c.text.Execute(&b, d); err != nil {
			return m, &Error{"textBody", clean(err)}
		}
		m.Text = b.String()
	}
	if c.html != nil {
		b.Reset()
		if err := c.html.Execute(&b, d); err != nil {
			return m, &Error{"htmlBody", clean(err)}
		}
		m.HTML = b.String()
	}
	return m, nil
}
